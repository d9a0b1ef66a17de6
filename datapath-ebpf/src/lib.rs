#![no_std]
// Empty on purpose: lets the loader name this crate as a build-dependency, so the
// embedded object is rebuilt when the datapath changes. The programs live in main.rs.
