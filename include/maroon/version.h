// The version of the maroon library a program runs with.
#pragma once

namespace maroon {

// "MAJOR.MINOR.PATCH" of the installed libmaroon.
const char* version();

}  // namespace maroon
