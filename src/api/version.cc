#include "maroon/version.h"

namespace maroon {

const char* version() { return MAROON_VERSION; }

}  // namespace maroon
