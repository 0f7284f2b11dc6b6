//! Tests against real kubectl binaries (being written).
