//! resflow's sampler in a web page: a checkpoint's model loaded on the browser's WebGPU
//! adapter, its samples drawn through the fixed-point inverse and, for toy models, its density
//! on a grid, each returned to JavaScript as a promise (a browser's readbacks complete on its
//! event loop).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Float32Array, Promise};
use resflow::nn::{ParamStore, PowerIters};
use resflow::train::AnyRun;
use resflow::{Gpu, Tensor};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// Power iterations of an image model's evaluation weights here: natively they run to a
/// tolerance, which needs a readback per iteration that a browser cannot wait for.
const IMAGE_POWER_ITERS: usize = 200;
/// Images one draw may ask for (they are shown as a grid).
const MAX_IMAGES: usize = 256;

/// A loaded model, its evaluation weights, and the device it runs on.
#[wasm_bindgen]
pub struct Sampler {
    model: Rc<AnyRun>,
    /// The EMA weights, power-iterated once at load (as `resflow-sample` does per run).
    store: Rc<ParamStore<Tensor>>,
    adapter: String,
    /// The fixed-point iterations each block took in the last draw.
    iterations: Rc<RefCell<Vec<usize>>>,
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// Opens the browser's adapter and loads the checkpoint in `bytes`; resolves to a [`Sampler`].
#[wasm_bindgen]
pub async fn open(bytes: Vec<u8>) -> Result<Sampler, JsValue> {
    let gpu = Gpu::open_async(None).await.map_err(js_error)?;
    // Browsers often withhold the adapter's name from wgpu; the page asks navigator.gpu too.
    let adapter = format!("{} ({:?}, {:?})", gpu.info().name, gpu.info().device_type, gpu.info().backend);
    let model = AnyRun::parse(&gpu, &bytes, "the checkpoint").map_err(js_error)?;
    let store = match &model {
        AnyRun::Toy(run) => run.eval_store(),
        AnyRun::Image(run) => run.eval_store_with(true, PowerIters::Fixed(IMAGE_POWER_ITERS)),
    };
    Ok(Sampler { model: Rc::new(model), store: Rc::new(store), adapter, iterations: Rc::default() })
}

#[wasm_bindgen]
impl Sampler {
    /// The adapter's name and backend.
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// `toy` or `image`.
    pub fn kind(&self) -> String {
        match *self.model {
            AnyRun::Toy(_) => "toy".into(),
            AnyRun::Image(_) => "image".into(),
        }
    }

    /// An image model's [channels, height, width] (empty for toy models).
    pub fn image_shape(&self) -> Vec<u32> {
        match &*self.model {
            AnyRun::Toy(_) => Vec::new(),
            AnyRun::Image(run) => run.format.shape.iter().map(|&d| d as u32).collect(),
        }
    }

    /// The fixed-point iterations each residual block took in the last draw.
    pub fn iterations(&self) -> Vec<u32> {
        self.iterations.borrow().iter().map(|&n| n as u32).collect()
    }

    /// What the model is: its shape and training step.
    pub fn describe(&self) -> String {
        match &*self.model {
            AnyRun::Toy(run) => {
                let c = &run.config;
                let hidden: Vec<String> = c.hidden.iter().map(|h| h.to_string()).collect();
                format!("{} blocks of 2-{}-2, step {}", c.blocks, hidden.join("-"), run.step())
            }
            AnyRun::Image(run) => {
                let c = &run.config;
                format!(
                    "image flow on {:?} images, {} scales × {} blocks of width {}, step {}",
                    run.format.shape,
                    c.scales,
                    c.blocks,
                    c.width,
                    run.step()
                )
            }
        }
    }

    /// `n` samples as a flat Float32Array: `x, y, x, y, …` for toy models, drawn exactly as
    /// `resflow-sample draw --n N --seed S` draws them; [n, C, H, W] pixels in [0, 1] for image
    /// models.
    pub fn draw(&self, n: usize, seed: u64, temperature: f32) -> Promise {
        let (model, store, iterations) = (self.model.clone(), self.store.clone(), self.iterations.clone());
        future_to_promise(async move {
            let mut out = Vec::new();
            let sink = |p: &[f32]| {
                out.extend_from_slice(p);
                Ok(())
            };
            let iters = match &*model {
                AnyRun::Toy(run) => {
                    if n == 0 || n > 1 << 20 {
                        return Err(js_error(format!("n must be in 1..=1048576, got {n}")));
                    }
                    let (gpu, flow, chunk) = (&run.gpu, &run.flow, run.chunk());
                    resflow::models::toy::sample_chunks_async(gpu, flow, &store, n, seed, temperature, chunk, sink)
                        .await
                        .map_err(js_error)?
                }
                AnyRun::Image(run) => {
                    if n == 0 || n > MAX_IMAGES {
                        return Err(js_error(format!("an image model draws 1..={MAX_IMAGES} images, got {n}")));
                    }
                    run.sample_chunks_async(&store, n, seed, temperature, sink).await.map_err(js_error)?
                }
            };
            *iterations.borrow_mut() = iters;
            Ok(Float32Array::from(out.as_slice()).into())
        })
    }

    /// log p on a `res` × `res` grid over [−extent, extent]², rows from the top (y = extent)
    /// down, as a Float32Array (toy models).
    pub fn density(&self, res: usize, extent: f32) -> Promise {
        let (model, store) = (self.model.clone(), self.store.clone());
        future_to_promise(async move {
            let AnyRun::Toy(run) = &*model else {
                return Err(js_error("a density grid is drawn for toy (2-D) models"));
            };
            if !(2..=512).contains(&res) {
                return Err(js_error(format!("res must be in 2..=512, got {res}")));
            }
            let step = 2.0 * extent / res as f32;
            let mut points = Vec::with_capacity(2 * res * res);
            for row in 0..res {
                for col in 0..res {
                    points.push(-extent + (col as f32 + 0.5) * step);
                    points.push(extent - (row as f32 + 0.5) * step);
                }
            }
            let lp = resflow::models::toy::log_density_async(&run.gpu, &run.flow, &store, &points, run.chunk()).await;
            let lp: Vec<f32> = lp.into_iter().map(|v| v as f32).collect();
            Ok(Float32Array::from(lp.as_slice()).into())
        })
    }
}
