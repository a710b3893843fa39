// The S3 store: the S3 REST API over libcurl, each request signed with
// SigV4 by CURLOPT_AWS_SIGV4 ("aws:amz:<region>:s3"). Requests carry
// x-amz-content-sha256, the SHA-256 of their body (which curl then signs
// instead of hashing again; S3 checks the body against it). Bodies are in
// memory, at most one part (part_bytes) at a time.
//
// curl (7.88) puts the URL's path and query into the canonical request as
// they are, so both are built here already canonical: each path segment
// percent-encoded, query parameters sorted by name, every one "name=value".
//
// Multipart upload: CreateMultipartUpload (POST ?uploads=), UploadPart (PUT
// ?partNumber=&uploadId=) per part, CompleteMultipartUpload (POST
// ?uploadId=) listing the parts' ETags; on failure the upload is aborted
// (DELETE ?uploadId=), best effort: a bucket lifecycle rule for incomplete
// uploads cleans up what a crash leaves.
//
// One request at a time per store (one thread uses it); the easy handle is
// reused so that its connection is.
#include <curl/curl.h>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <pugixml.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/backoff.h"
#include "objstore/stores.h"
#include "storage/env.h"

namespace maroon::objstore {

namespace {

constexpr size_t kErrorBodyMax = 64 * 1024;      // an error's XML, kept for the message
constexpr size_t kListBodyMax = 16 * 1024 * 1024;  // one page of a listing
constexpr size_t kListPagesMax = 10000;

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  const int ok = EVP_Digest(data.data(), data.size(), digest, &n, EVP_sha256(), nullptr);
  MAROON_ASSERT(ok == 1 && n == 32);
  std::string hex;
  hex.reserve(64);
  for (unsigned int i = 0; i < n; i++) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

// RFC 3986 percent-encoding of everything but the unreserved characters
// (and '/', if keep_slash), as SigV4 wants it.
std::string uri_encode(std::string_view s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                            c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// name -> value; a std::map, so sorted as the canonical query needs.
using Query = std::map<std::string, std::string>;

std::string encode_query(const Query& q) {
  std::string out;
  for (const auto& [k, v] : q) {
    if (!out.empty()) out += '&';
    out += uri_encode(k, false) + "=" + uri_encode(v, false);
  }
  return out;
}

void ensure_curl_global() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Response {
  long status = 0;
  std::string body;  // unless the body went to a file (2xx of a download)
  std::string etag;
};

// Where a response body goes.
struct BodySink {
  std::string* text = nullptr;  // kept, up to limit
  size_t limit = 0;
  File* file = nullptr;  // a download: written here when the status is 2xx
  uint64_t written = 0;
  uint64_t file_limit = 0;  // a download larger than this is cut off (0: none)
  uint64_t total = 0;
  const ProgressFn* progress = nullptr;
  long status = 0;
  Status error;
  bool overflow = false;
};

size_t on_body(char* data, size_t size, size_t nmemb, void* arg) {
  auto* sink = static_cast<BodySink*>(arg);
  const size_t n = size * nmemb;
  if (sink->file != nullptr && sink->status / 100 == 2) {
    if (sink->file_limit != 0 && sink->written + n > sink->file_limit) {
      sink->error = corruption(fmt::format("the object is larger than the {} bytes listed",
                                           sink->file_limit));
      return 0;
    }
    if (Status s = sink->file->write_at(sink->written, std::string_view(data, n)); !s) {
      sink->error = s;
      return 0;  // aborts the transfer
    }
    sink->written += n;
    if (sink->progress != nullptr && *sink->progress) (*sink->progress)(sink->written, sink->total);
    return n;
  }
  if (sink->text->size() + n > sink->limit) {
    // An error's body is kept in part (a proxy's HTML page may be long);
    // a listing's must be whole.
    if (sink->status / 100 != 2) {
      sink->text->append(data, std::min(n, sink->limit - sink->text->size()));
      return n;
    }
    sink->overflow = true;
    return 0;
  }
  sink->text->append(data, n);
  return n;
}

// Aborts a transfer once the store is cancelled.
int on_xferinfo(void* arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(arg)->load() ? 1 : 0;
}

struct HeaderSink {
  Response* response = nullptr;
  BodySink* body = nullptr;
};

size_t on_header(char* data, size_t size, size_t nmemb, void* arg) {
  auto* h = static_cast<HeaderSink*>(arg);
  const size_t n = size * nmemb;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    // A new response (after a 100 Continue, a new one starts): its status.
    const size_t sp = line.find(' ');
    if (sp != std::string_view::npos) {
      h->response->status = std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
      h->body->status = h->response->status;
    }
    return n;
  }
  const size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.remove_suffix(1);
    }
    if (name == "etag") h->response->etag = std::string(value);
    if (name == "content-length" && h->body->total == 0) {
      h->body->total = std::strtoull(std::string(value).c_str(), nullptr, 10);
    }
  }
  return n;
}

// An S3 error body, parsed once: its <Code> (empty if it is none), and
// "<Code>: <Message>", or the body's start.
struct S3ErrorBody {
  std::string code;
  std::string text;
};

S3ErrorBody parse_error(const std::string& body) {
  pugi::xml_document doc;
  if (doc.load_buffer(body.data(), body.size())) {
    if (pugi::xml_node e = doc.child("Error")) {
      return {e.child_value("Code"),
              fmt::format("{}: {}", e.child_value("Code"), e.child_value("Message"))};
    }
  }
  std::string start = body.substr(0, 200);
  for (char& c : start) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return {{}, start.empty() ? "(no body)" : start};
}

class S3Store final : public ObjectStore {
 public:
  S3Store(S3Location where, StoreConfig config)
      : where_(std::move(where)), config_(std::move(config)), backoff_seed_(std::random_device{}()) {
    ensure_curl_global();
    curl_ = curl_easy_init();
    MAROON_ASSERT(curl_ != nullptr);
    std::string endpoint = config_.endpoint;
    while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
    if (endpoint.empty()) {
      base_ = fmt::format("https://{}.s3.{}.amazonaws.com/", where_.bucket, config_.region);
    } else {
      base_ = fmt::format("{}/{}/", endpoint, where_.bucket);
    }
  }
  ~S3Store() override { curl_easy_cleanup(curl_); }

  std::string describe() const override {
    return fmt::format("s3://{}/{} ({})", where_.bucket, where_.prefix,
                       config_.endpoint.empty() ? "AWS " + config_.region : config_.endpoint);
  }

  Status put_file(const std::string& key, const std::string& path,
                  const ProgressFn& progress) override {
    auto in = env_.open(path, /*create=*/false);
    if (!in) return in.status();
    auto size = (*in)->size();
    if (!size) return size.status();
    std::string part;
    if (*size <= config_.part_bytes) {
      if (Status s = (*in)->read_at(0, static_cast<size_t>(*size), part); !s) return s;
      if (part.size() != *size) return io_error(path + ": shorter than its size");
      auto r = call("PUT", key, {}, part, "application/octet-stream");
      if (!r) return context(r.status(), "storing", key);
      if (progress) progress(*size, *size);
      return Status::ok();
    }
    // Multipart.
    auto created = call("POST", key, {{"uploads", ""}}, {}, {});
    if (!created) return context(created.status(), "starting the upload of", key);
    pugi::xml_document doc;
    std::string upload_id;
    if (doc.load_buffer(created->body.data(), created->body.size())) {
      upload_id = doc.child("InitiateMultipartUploadResult").child_value("UploadId");
    }
    if (upload_id.empty()) {
      return io_error(fmt::format("{}: starting the upload of {}: no UploadId in the answer: {}",
                                  describe(), key, parse_error(created->body).text));
    }
    std::string complete = "<CompleteMultipartUpload>";
    Status failed;
    uint32_t number = 0;
    for (uint64_t at = 0; at < *size && failed.is_ok(); at += config_.part_bytes) {
      number++;
      const size_t n = static_cast<size_t>(std::min<uint64_t>(config_.part_bytes, *size - at));
      if (Status s = (*in)->read_at(at, n, part); !s) {
        failed = s;
        break;
      }
      if (part.size() != n) {
        failed = io_error(path + ": shorter than its size");
        break;
      }
      auto r = call("PUT", key, {{"partNumber", std::to_string(number)}, {"uploadId", upload_id}},
                    part, "application/octet-stream");
      if (!r) {
        failed = context(r.status(), fmt::format("uploading part {} of", number), key);
        break;
      }
      if (r->etag.empty()) {
        failed = io_error(fmt::format("{}: part {} of {}: no ETag in the answer", describe(),
                                      number, key));
        break;
      }
      complete += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", number,
                              xml_escape(r->etag));
      if (progress) progress(at + n, *size);
    }
    if (failed.is_ok()) {
      complete += "</CompleteMultipartUpload>";
      auto r = call("POST", key, {{"uploadId", upload_id}}, complete, "application/xml");
      // S3 may answer 200 and still fail, with an Error body.
      if (!r) {
        failed = context(r.status(), "completing the upload of", key);
      } else if (S3ErrorBody e = parse_error(r->body); !e.code.empty()) {
        failed = io_error(
            fmt::format("{}: completing the upload of {}: {}", describe(), key, e.text));
      }
    }
    if (!failed.is_ok()) {
      (void)call("DELETE", key, {{"uploadId", upload_id}}, {}, {});  // abort, best effort
    }
    return failed;
  }

  Result<std::vector<ObjectInfo>> list(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    std::string token;
    for (size_t page = 0; page < kListPagesMax; page++) {
      Query q{{"list-type", "2"}, {"prefix", where_.prefix + prefix}};
      if (!token.empty()) q["continuation-token"] = token;
      auto r = call("GET", "", q, {}, {}, nullptr, kListBodyMax);
      if (!r) return context(r.status(), "listing", prefix);
      pugi::xml_document doc;
      if (!doc.load_buffer(r->body.data(), r->body.size())) {
        return io_error(fmt::format("{}: listing {}: the answer is not XML: {}", describe(),
                                    prefix, parse_error(r->body).text));
      }
      pugi::xml_node result = doc.child("ListBucketResult");
      for (pugi::xml_node c = result.child("Contents"); c; c = c.next_sibling("Contents")) {
        std::string key = c.child_value("Key");
        if (!key.starts_with(where_.prefix)) continue;
        key.erase(0, where_.prefix.size());
        out.push_back(ObjectInfo{std::move(key), std::strtoull(c.child_value("Size"), nullptr, 10)});
      }
      if (std::string_view(result.child_value("IsTruncated")) != "true") {
        std::sort(out.begin(), out.end(),
                  [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
        return out;
      }
      token = result.child_value("NextContinuationToken");
      if (token.empty()) {
        return io_error(fmt::format("{}: listing {}: truncated, but no continuation token",
                                    describe(), prefix));
      }
    }
    return too_large(fmt::format("{}: listing {}: more than {} pages", describe(), prefix,
                                 kListPagesMax));
  }

  Status get_file(const std::string& key, const std::string& path, uint64_t bytes,
                  const ProgressFn& progress) override {
    const std::string temp = path + ".part";
    auto file = env_.open(temp, /*create=*/true);
    if (!file) return file.status();
    Download d{file->get(), &progress, bytes};
    Status s;
    auto r = call("GET", key, {}, {}, {}, &d);
    if (!r) {
      s = context(r.status(), "fetching", key);
    } else if (bytes != 0 && d.written != bytes) {
      s = corruption(fmt::format("{}: {} is {} bytes, not the {} listed", describe(), key,
                                 d.written, bytes));
    }
    if (s) s = (*file)->sync();
    file->reset();
    if (s) s = env_.rename(temp, path);
    if (!s) {
      (void)env_.remove(temp);
      return s;
    }
    const size_t slash = path.rfind('/');
    return env_.sync_dir(slash == std::string::npos ? "." : path.substr(0, slash));
  }

  void cancel() override { cancelled_ = true; }

  Status remove(const std::string& key) override {
    auto r = call("DELETE", key, {}, {}, {});
    if (!r && r.status().code() != Code::kNotFound) return context(r.status(), "deleting", key);
    return Status::ok();
  }

 private:
  struct Download {
    File* file;
    const ProgressFn* progress;
    uint64_t limit = 0;    // 0: none
    uint64_t written = 0;  // of the last attempt
  };

  static std::string xml_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
      }
    }
    return out;
  }

  Status context(const Status& s, std::string_view doing, const std::string& key) const {
    return Status(s.code(), fmt::format("{}: {} {}: {}", describe(), doing, key, s.message()));
  }

  // One request, retried while the failure is one a retry may cure.
  Result<Response> call(const char* method, const std::string& key, const Query& query,
                        std::string_view body, std::string_view content_type,
                        Download* download = nullptr, size_t body_max = kErrorBodyMax) {
    Backoff backoff(std::chrono::milliseconds(config_.retry_min_ms),
                    std::chrono::milliseconds(config_.retry_max_ms), backoff_seed_++);
    const std::string payload_hash = sha256_hex(body);
    for (uint32_t attempt = 1;; attempt++) {
      if (cancelled_.load()) return unavailable("cancelled");
      bool retry = false;
      Result<Response> r = once(method, key, query, body, content_type, payload_hash, download,
                                body_max, retry);
      if (r || !retry || attempt >= config_.attempts) {
        if (!r && retry) {
          return Status(r.status().code(),
                        fmt::format("{} (after {} attempts)", r.status().message(), attempt));
        }
        return r;
      }
      const auto until = std::chrono::steady_clock::now() + backoff.next();
      while (std::chrono::steady_clock::now() < until && !cancelled_.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  Result<Response> once(const char* method, const std::string& key, const Query& query,
                        std::string_view body, std::string_view content_type,
                        const std::string& payload_hash, Download* download, size_t body_max,
                        bool& retry) {
    curl_easy_reset(curl_);
    std::string url = base_ + uri_encode(where_.prefix + key, /*keep_slash=*/true);
    if (key.empty()) url = base_;  // the bucket itself
    if (!query.empty()) url += "?" + encode_query(query);
    Response response;
    BodySink sink;
    sink.text = &response.body;
    sink.limit = body_max;
    if (download != nullptr) {
      if (Status s = download->file->truncate(0); !s) return s;
      sink.file = download->file;
      sink.progress = download->progress;
      sink.file_limit = download->limit;
      download->written = 0;
      if (download->limit != 0) {
        curl_easy_setopt(curl_, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(download->limit));
      }
    }
    HeaderSink headers{&response, &sink};
    const std::string sigv4 = fmt::format("aws:amz:{}:s3", config_.region);
    const std::string userpwd = config_.access_key + ":" + config_.secret_key;
    curl_slist* list = nullptr;
    list = curl_slist_append(list, ("x-amz-content-sha256: " + payload_hash).c_str());
    if (!config_.session_token.empty()) {
      list = curl_slist_append(list, ("x-amz-security-token: " + config_.session_token).c_str());
    }
    if (!content_type.empty()) {
      list = curl_slist_append(list, fmt::format("Content-Type: {}", content_type).c_str());
    }
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_AWS_SIGV4, sigv4.c_str());
    curl_easy_setopt(curl_, CURLOPT_USERPWD, userpwd.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout_ms));
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl_, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(std::max<uint64_t>(1, config_.stall_timeout_ms / 1000)));
    curl_easy_setopt(curl_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl_, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(curl_, CURLOPT_XFERINFODATA, &cancelled_);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &headers);
    const std::string_view m = method;
    if (m == "PUT" || m == "POST") {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.data());
      if (m == "PUT") curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, "PUT");
    } else if (m == "DELETE") {
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
      curl_easy_setopt(curl_, CURLOPT_HTTPGET, 1L);
    }
    const CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(list);
    if (download != nullptr) download->written = sink.written;
    const std::string what = fmt::format("{} {}", method, url);
    if (!sink.error.is_ok()) return sink.error;
    if (cancelled_.load()) return unavailable("cancelled");
    if (rc != CURLE_OK) {
      if (sink.overflow) {
        return too_large(fmt::format("{}: the answer is larger than {} bytes", what, body_max));
      }
      // What a retry cannot cure: a malformed or unsupported URL, a
      // certificate that does not verify, a refused login.
      switch (rc) {
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_LOGIN_DENIED:
        case CURLE_FILESIZE_EXCEEDED:
          return invalid_argument(fmt::format("{}: {}", what, curl_easy_strerror(rc)));
        default:
          break;
      }
      retry = true;
      return unavailable(fmt::format("{}: {} (is the object store reachable?)", what,
                                     curl_easy_strerror(rc)));
    }
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &response.status);
    if (response.status / 100 == 2) return response;
    const auto [code, body_text] = parse_error(response.body);
    const std::string text = fmt::format("{}: HTTP {}: {}", what, response.status, body_text);
    if (response.status == 404) return Status(Code::kNotFound, text);
    if (response.status == 403 || response.status == 401) {
      return Status(Code::kUnauthenticated, text + " (check the credentials and the region)");
    }
    if (response.status >= 500 || response.status == 429 || code == "RequestTimeout" ||
        code == "SlowDown") {
      retry = true;
      return unavailable(text);
    }
    return invalid_argument(text);
  }

  const S3Location where_;
  const StoreConfig config_;
  std::string base_;  // the bucket's URL, ending in '/'
  uint64_t backoff_seed_;
  CURL* curl_ = nullptr;
  PosixEnv env_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> make_s3_store(S3Location where, const StoreConfig& config) {
  return std::unique_ptr<ObjectStore>(std::make_unique<S3Store>(std::move(where), config));
}

}  // namespace maroon::objstore
