//! Workloads: what clients do and which model checks it. (Issue 5.)
