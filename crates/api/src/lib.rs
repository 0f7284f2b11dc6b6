//! Object model shared by every component (to be filled by the API groundwork).
