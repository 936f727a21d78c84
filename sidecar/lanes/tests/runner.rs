//! Integration tests of the `lanes` binary, in one test binary.
