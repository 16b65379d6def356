//! resflow's sampler in a web page: a checkpoint's toy model loaded on the browser's WebGPU
//! adapter, its samples drawn through the fixed-point inverse and its density on a grid, each
//! returned to JavaScript as a promise (a browser's readbacks complete on its event loop).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Float32Array, Promise};
use resflow::nn::ParamStore;
use resflow::train::toy::ToyRun;
use resflow::train::AnyRun;
use resflow::Gpu;
use resflow::Tensor;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// A loaded model, its evaluation weights, and the device it runs on.
#[wasm_bindgen]
pub struct Sampler {
    run: Rc<ToyRun>,
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
    match AnyRun::parse(&gpu, &bytes, "the checkpoint").map_err(js_error)? {
        AnyRun::Toy(run) => {
            let store = Rc::new(run.eval_store());
            Ok(Sampler { run: Rc::new(*run), store, adapter, iterations: Rc::default() })
        }
        AnyRun::Image(_) => {
            Err(js_error("this page draws toy (2-D) models; image models are sampled with resflow-sample"))
        }
    }
}

#[wasm_bindgen]
impl Sampler {
    /// The adapter's name and backend.
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// The fixed-point iterations each residual block took in the last draw.
    pub fn iterations(&self) -> Vec<u32> {
        self.iterations.borrow().iter().map(|&n| n as u32).collect()
    }

    /// What the model is: blocks, widths, dataset and training step.
    pub fn describe(&self) -> String {
        let c = &self.run.config;
        let hidden: Vec<String> = c.hidden.iter().map(|h| h.to_string()).collect();
        format!("{} blocks of 2-{}-2, step {}", c.blocks, hidden.join("-"), self.run.step())
    }

    /// `n` samples as a flat `x, y, x, y, …` Float32Array, drawn exactly as
    /// `resflow-sample draw --n N --seed S` draws them.
    pub fn draw(&self, n: usize, seed: u64, temperature: f32) -> Promise {
        let (run, store, iterations) = (self.run.clone(), self.store.clone(), self.iterations.clone());
        future_to_promise(async move {
            if n == 0 || n > 1 << 20 {
                return Err(js_error(format!("n must be in 1..=1048576, got {n}")));
            }
            let mut out = Vec::with_capacity(2 * n);
            resflow::models::toy::sample_chunks_async(
                &run.gpu,
                &run.flow,
                &store,
                n,
                seed,
                temperature,
                run.chunk(),
                |p| {
                    out.extend_from_slice(p);
                    Ok(())
                },
            )
            .await
            .map_err(js_error)
            .map(|iters| *iterations.borrow_mut() = iters)?;
            Ok(Float32Array::from(out.as_slice()).into())
        })
    }

    /// log p on a `res` × `res` grid over [−extent, extent]², rows from the top (y = extent)
    /// down, as a Float32Array.
    pub fn density(&self, res: usize, extent: f32) -> Promise {
        let (run, store) = (self.run.clone(), self.store.clone());
        future_to_promise(async move {
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
