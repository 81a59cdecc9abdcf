//! Configuration (`--config FILE`, TOML). Unknown keys and bad values are errors that
//! name the key and the file.
