// The two ObjectStore implementations, made by open_store (object_store.cc).
#pragma once

#include <memory>
#include <string>

#include "objstore/object_store.h"

namespace maroon::objstore {

// A directory: objects are files under root (created on the first put).
std::unique_ptr<ObjectStore> make_dir_store(std::string root, const StoreConfig& config);

// The S3 REST API through libcurl (SigV4 by CURLOPT_AWS_SIGV4). `config`
// has its endpoint, region and credentials resolved already.
struct S3Location {
  std::string bucket;
  std::string prefix;  // "" or ending in '/'
};
Result<std::unique_ptr<ObjectStore>> make_s3_store(S3Location where, const StoreConfig& config);

}  // namespace maroon::objstore
