//! Export of a trained checkpoint to other inference engines: today
//! [CTranslate2](https://github.com/OpenNMT/CTranslate2) ([`ctranslate2`], written through
//! [`model_bin`]).

pub mod ctranslate2;
pub mod model_bin;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use locus_data::atomic_dir::write_dir_atomically;

pub use ctranslate2::{convert, Ct2Model, ExportOptions, Quantization};

use crate::checkpoint::load_checkpoint;
use crate::error::{Result, TrainError};

/// What [`export_ctranslate2`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// Variables stored in `model.bin` (aliases excluded).
    pub variables: usize,
    /// Variables stored as aliases of another.
    pub aliases: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Most source tokens (EOS excluded) the model can take in CTranslate2, if limited by a
    /// position table.
    pub max_source_tokens: Option<usize>,
    /// Most output tokens the model can produce in CTranslate2, if limited by a position table.
    pub max_output_tokens: Option<usize>,
}

/// Exports the checkpoint in `checkpoint` (verified as for translation) to a new CTranslate2
/// model directory `out`, written all or nothing.
///
/// # Errors
/// A checkpoint that does not load, a model CTranslate2 cannot represent
/// ([`TrainError::Export`], naming the setting), `out` existing and not empty, or an I/O error.
pub fn export_ctranslate2(checkpoint: &Path, out: &Path, options: &ExportOptions) -> Result<ExportSummary> {
    let loaded = load_checkpoint(checkpoint, &Device::Cpu)?;
    let weights: HashMap<String, Tensor> = {
        let vars = loaded.varmap.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        vars.iter().map(|(name, var)| (name.clone(), var.as_tensor().clone())).collect()
    };
    let tokenizer = loaded.tokenizer.inner();
    let vocabulary = (0..loaded.tokenizer.vocab_size() as u32)
        .map(|id| {
            tokenizer.id_to_token(id).ok_or_else(|| {
                TrainError::Export(format!(
                    "the tokenizer has no token for id {id} (of {})",
                    loaded.tokenizer.vocab_size()
                ))
            })
        })
        .collect::<Result<Vec<String>>>()?;
    let model = convert(&loaded.config.model, &weights, &vocabulary, options)?;
    write_dir_atomically(out, || Ok::<(), TrainError>(()), |dir| model.write(dir))?;
    Ok(ExportSummary {
        variables: model.model_bin.names().count(),
        aliases: model.model_bin.aliases().len(),
        vocab_size: vocabulary.len(),
        max_source_tokens: model.max_source_tokens(),
        max_output_tokens: model.max_output_tokens(),
    })
}
