//! The Postgres glue every stage uses: SPI (plans kept per backend, settings for a call,
//! running as a function's owner), shared memory between backends, the launcher and the
//! workers (wake-ups, statistics, the settings version), and trigger rows read by attribute
//! number.

pub mod row;
pub mod shared;
pub mod spi;
