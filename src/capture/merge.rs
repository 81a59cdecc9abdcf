//! Timestamp-ordered merge of several sources.
