//! The built-in guards. (Implemented in full by the guards work; see `default_chain`.)
