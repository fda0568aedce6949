//! The `saelab.results.v1` schema: the typed result of each study stage
//! (`result.json` in its folder) and the study's `results.json`, with the
//! one reader and writer of each. The `study` crate writes them; the
//! `report` crate reads them and nothing else.

mod io;
mod key;
mod machine;
mod schema;
mod slim;
mod stage;

pub use io::{
    read, read_stage_result, write, write_gz, write_stage_result, ResultsError, RESULTS_FILE,
    STAGE_RESULT,
};
pub use key::{f32_default, ArchCoeffs, JumpReluCoeffs, SaeKey, CATEGORIES};
pub use machine::Machine;
pub use schema::*;
pub use slim::{slim, slim_copy, SLIM_NOTE};
pub use stage::{StageEntry, State};
