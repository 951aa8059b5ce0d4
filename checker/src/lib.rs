//! The faultline checker: history format, models, linearizability search.
