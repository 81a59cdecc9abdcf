//! Flow shards: see [`super`].
