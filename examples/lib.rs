//! Runnable examples of tokengate; see the `[[example]]` targets.
