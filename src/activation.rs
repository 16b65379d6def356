//! The activations of the Lipschitz networks and the derivative pieces their VJPs need
//! (docs/DESIGN.md §2): LipSwish with a learnable β, and ELU and softplus for the ablations.

/// Which activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// φ(x) = x·σ(βx)/1.1 with β = softplus(β_raw); slope in (-0.091, 0.99985].
    LipSwish,
    /// ELU with α = 1 (1-Lipschitz).
    Elu,
    /// log(1 + eˣ) (1-Lipschitz).
    Softplus,
}

/// Which function of x (and β) a kernel evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFn {
    /// φ(x)
    Value,
    /// φ'(x)
    D1,
    /// φ''(x)
    D2,
    /// ∂φ/∂β
    DBeta,
    /// ∂φ'/∂β
    D1Beta,
}

impl Activation {
    /// Every activation and its name in WGSL: its code is its index here (see
    /// `crate::ops::op_code_constants`).
    pub const TABLE: [(Activation, &'static str); 3] =
        [(Activation::LipSwish, "LIPSWISH"), (Activation::Elu, "ELU"), (Activation::Softplus, "SOFTPLUS")];

    pub fn code(self) -> u32 {
        static TABLE: [(Activation, &str); 3] = Activation::TABLE;
        TABLE.iter().position(|(a, _)| *a == self).expect("every activation is in the table") as u32
    }
    /// The WGSL constant holding [`Activation::code`].
    pub fn wgsl_name(self) -> String {
        format!("ACT_{}", Self::TABLE[self.code() as usize].1)
    }
    /// Whether the activation has the learnable β.
    pub fn has_beta(self) -> bool {
        self == Activation::LipSwish
    }

    /// The f64 reference of every piece.
    pub fn eval(self, f: ActFn, x: f64, beta: f64) -> f64 {
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        match self {
            Activation::LipSwish => {
                let s = sigmoid(beta * x);
                let ds = s * (1.0 - s);
                match f {
                    ActFn::Value => x * s / 1.1,
                    ActFn::D1 => (s + beta * x * ds) / 1.1,
                    ActFn::D2 => beta * ds * (2.0 + beta * x * (1.0 - 2.0 * s)) / 1.1,
                    ActFn::DBeta => x * x * ds / 1.1,
                    ActFn::D1Beta => x * ds * (2.0 + beta * x * (1.0 - 2.0 * s)) / 1.1,
                }
            }
            Activation::Elu => match (f, x > 0.0) {
                (ActFn::Value, true) => x,
                (ActFn::Value, false) => x.exp_m1(),
                (ActFn::D1, true) => 1.0,
                (ActFn::D1 | ActFn::D2, false) => x.exp(),
                _ => 0.0,
            },
            Activation::Softplus => {
                let s = sigmoid(x);
                match f {
                    ActFn::Value => x.max(0.0) + (-x.abs()).exp().ln_1p(),
                    ActFn::D1 => s,
                    ActFn::D2 => s * (1.0 - s),
                    _ => 0.0,
                }
            }
        }
    }
}

impl ActFn {
    /// Every piece and its name in WGSL (codes as for [`Activation::TABLE`]).
    pub const TABLE: [(ActFn, &'static str); 5] = [
        (ActFn::Value, "VALUE"),
        (ActFn::D1, "D1"),
        (ActFn::D2, "D2"),
        (ActFn::DBeta, "DBETA"),
        (ActFn::D1Beta, "D1BETA"),
    ];

    pub fn code(self) -> u32 {
        static TABLE: [(ActFn, &str); 5] = ActFn::TABLE;
        TABLE.iter().position(|(f, _)| *f == self).expect("every piece is in the table") as u32
    }

    /// The WGSL constant holding [`ActFn::code`].
    pub fn wgsl_name(self) -> String {
        format!("ACT_FN_{}", Self::TABLE[self.code() as usize].1)
    }
}
