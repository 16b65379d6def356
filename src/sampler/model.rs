//! Where the model comes from: `--checkpoint`, or the checkpoint built into this program.

use std::path::PathBuf;

use resflow::train::AnyRun;
use resflow::Gpu;

/// The checkpoint `RESFLOW_EMBED_CHECKPOINT` named at build time (checked then by build.rs).
#[cfg(resflow_embedded)]
const EMBEDDED: Option<&[u8]> = Some(include_bytes!(concat!(env!("OUT_DIR"), "/embedded.safetensors")));
#[cfg(not(resflow_embedded))]
const EMBEDDED: Option<&[u8]> = None;

#[derive(clap::Args)]
pub struct ModelArgs {
    /// The checkpoint to use (default: the one built into this program, if any).
    #[arg(long, value_name = "F.safetensors")]
    pub checkpoint: Option<PathBuf>,
}

impl ModelArgs {
    /// The model, from `--checkpoint` or else the built-in one.
    pub fn load(&self, gpu: &Gpu) -> Result<AnyRun, Box<dyn std::error::Error>> {
        match (&self.checkpoint, EMBEDDED) {
            (Some(path), _) => Ok(AnyRun::load(gpu, path)?),
            (None, Some(bytes)) => Ok(AnyRun::parse(gpu, bytes, "the built-in checkpoint")?),
            (None, None) => Err("no --checkpoint given, and this resflow-sample carries no model \
                 (build one that does with RESFLOW_EMBED_CHECKPOINT=path cargo build --release --bin resflow-sample)"
                .into()),
        }
    }

    fn source(&self) -> String {
        match &self.checkpoint {
            Some(p) => p.display().to_string(),
            None if EMBEDDED.is_some() => "built into this program".into(),
            None => "none".into(),
        }
    }
}

/// `resflow-sample info`.
pub fn info(gpu: &Gpu, args: &ModelArgs) -> Result<(), Box<dyn std::error::Error>> {
    let run = args.load(gpu)?;
    println!("model     {}", args.source());
    match &run {
        AnyRun::Toy(r) => {
            let c = &r.config;
            let data = match &r.source {
                resflow::train::toy::Source::Toy(d) => d.name().to_string(),
                resflow::train::toy::Source::Points(p) => format!("{} given points", p.len() / 2),
            };
            println!("family    toy 2-D flow of {} blocks of 2-{}-2, trained on {data}", c.blocks, dims(&c.hidden));
            println!("step      {}", r.step());
        }
        AnyRun::Image(r) => {
            println!("family    image flow on {:?} images ({} levels)", r.format.shape, r.format.levels);
            println!("step      {}", r.step());
        }
    }
    println!("adapter   {} ({:?})", gpu.info().name, gpu.info().backend);
    Ok(())
}

fn dims(hidden: &[usize]) -> String {
    hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("-")
}
