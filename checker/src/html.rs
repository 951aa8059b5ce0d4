//! HTML page
