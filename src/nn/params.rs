//! The named parameter store and its binding to a tape.
//!
//! Names are stable (`block3.g.lin1.weight`), so they become checkpoint keys. Persistent
//! non-trainable state (spectral-norm vectors) lives in the same store, flagged as such.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::ops::{Dist, TensorOps};
use crate::tape::{Gradients, Tape, Var};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(usize);

#[derive(Clone)]
struct Entry<T> {
    name: String,
    value: T,
    trainable: bool,
}

/// Named tensors of one model, in creation order.
#[derive(Clone)]
pub struct ParamStore<T> {
    proto: T,
    entries: Vec<Entry<T>>,
    index: HashMap<String, usize>,
    seed: u64,
    draws: u64,
}

impl<T: TensorOps> ParamStore<T> {
    /// A store whose tensors are made on the device of `proto`, initialised from `seed`.
    pub fn new(proto: T, seed: u64) -> Self {
        ParamStore { proto, entries: Vec::new(), index: HashMap::new(), seed, draws: 0 }
    }

    pub fn add(&mut self, name: &str, value: T, trainable: bool) -> ParamId {
        assert!(!self.index.contains_key(name), "parameter {name:?} defined twice");
        self.index.insert(name.to_string(), self.entries.len());
        self.entries.push(Entry { name: name.to_string(), value, trainable });
        ParamId(self.entries.len() - 1)
    }

    /// Random numbers on the store's device; each call draws a fresh stream of the store's seed.
    pub fn random(&mut self, shape: &[usize], dist: Dist) -> T {
        self.draws += 1;
        self.proto.random_like(shape, dist, self.seed, self.draws)
    }

    pub fn full(&self, shape: &[usize], value: f32) -> T {
        self.proto.full_like(shape, value)
    }

    pub fn get(&self, id: ParamId) -> &T {
        &self.entries[id.0].value
    }
    pub fn set(&mut self, id: ParamId, value: T) {
        assert_eq!(value.shape(), self.entries[id.0].value.shape(), "shape of {}", self.entries[id.0].name);
        // Stored state outlives steps: run a pending lazy chain now rather than keep its inputs.
        value.realize();
        self.entries[id.0].value = value;
    }
    pub fn name(&self, id: ParamId) -> &str {
        &self.entries[id.0].name
    }
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.index.get(name).map(|&i| ParamId(i))
    }
    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.entries[id.0].trainable
    }
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.entries.len()).map(ParamId)
    }
    pub fn trainable(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.ids().filter(|&id| self.is_trainable(id))
    }
    /// Number of trainable scalars.
    pub fn trainable_count(&self) -> usize {
        self.trainable().map(|id| self.get(id).numel()).sum()
    }
}

/// The parameters of a store as variables of one tape: trainable ones become leaves (once
/// each, however often a layer asks), the rest constants.
pub struct Binder<'a, T> {
    pub store: &'a ParamStore<T>,
    pub tape: &'a Tape<T>,
    vars: RefCell<HashMap<ParamId, Var<T>>>,
}

impl<'a, T: TensorOps> Binder<'a, T> {
    pub fn new(store: &'a ParamStore<T>, tape: &'a Tape<T>) -> Self {
        Binder { store, tape, vars: RefCell::new(HashMap::new()) }
    }

    pub fn var(&self, id: ParamId) -> Var<T> {
        self.vars
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| {
                let value = self.store.get(id).clone();
                if self.store.is_trainable(id) {
                    self.tape.leaf(value)
                } else {
                    Var::constant(value)
                }
            })
            .clone()
    }

    /// A constant on the tape (no gradient).
    pub fn constant(&self, value: T) -> Var<T> {
        Var::constant(value)
    }

    /// The gradient of every trainable parameter that took part (zeros for those that did not).
    pub fn gradients(&self, grads: &Gradients<T>) -> Vec<(ParamId, T)> {
        let vars = self.vars.borrow();
        self.store
            .trainable()
            .map(|id| {
                let g = match vars.get(&id) {
                    Some(v) => grads.get_or_zeros(v),
                    None => self.store.get(id).zeros_like(self.store.get(id).shape()),
                };
                (id, g)
            })
            .collect()
    }
}
