// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11). Invocation t encrypts
// the counter (t, 0, stream.x, stream.y) under the key `seed` and writes elements 4t..4t+3, so
// a (seed, stream) pair names the same numbers on every run and every device.
// MODE 0: uniform in [lo, hi); 1: normal with mean lo and std hi (Box–Muller); 2: ±1.

struct Params { n: u32, pad: u32, seed: vec2<u32>, stream: vec2<u32>, lo: f32, hi: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

override MODE: u32 = 0u;

// The 64-bit product a·b as (high word, low word), from 16-bit halves (WGSL has no u64).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, seed: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = seed;
    for (var r = 0u; r < 10u; r++) {
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// 24 random bits to a float in [0, 1).
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * 5.9604645e-8;
}

// (sin, cos) of the angle 2π·k/2²⁴ for the top 24 bits k of `w`. WGSL lets the built-in sin
// and cos err by 2⁻¹¹ inside [−π, π] and leaves them unbounded outside, so devices disagree
// by ~10⁻⁴ (SwiftShader does); here the angle is reduced exactly, in integers, to [0, π/4],
// where Taylor polynomials are good to f32 rounding, and the quadrant is applied by symmetry.
fn sincos_turn(w: u32) -> vec2<f32> {
    let k = w >> 8u;
    let quadrant = k >> 22u;
    let r = k & 0x3FFFFFu;
    let reflected = r > 0x200000u;
    let x = f32(select(r, 0x400000u - r, reflected)) * 3.7450703e-7; // (π/2) / 2²²
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-0.16666667 + x2 * (0.008333334 + x2 * (-1.984127e-4 + x2 * 2.7557319e-6))));
    let c = 1.0 + x2 * (-0.5 + x2 * (0.041666668 + x2 * (-0.0013888889 + x2 * 2.4801587e-5)));
    var sc = select(vec2<f32>(s, c), vec2<f32>(c, s), reflected);
    switch quadrant {
        case 1u: { sc = vec2<f32>(sc.y, -sc.x); }
        case 2u: { sc = -sc; }
        case 3u: { sc = vec2<f32>(-sc.y, sc.x); }
        default: {}
    }
    return sc;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    let base = t * 4u;
    if base >= p.n {
        return;
    }
    let w = philox(vec4<u32>(t, 0u, p.stream.x, p.stream.y), p.seed);
    var out: vec4<f32>;
    switch MODE {
        case 0u: {
            out = p.lo + (p.hi - p.lo) * vec4<f32>(unit(w.x), unit(w.y), unit(w.z), unit(w.w));
        }
        case 1u: {
            // u1 in (0, 1] keeps the logarithm finite.
            let r0 = sqrt(-2.0 * log(unit(w.x) + 5.9604645e-8));
            let r1 = sqrt(-2.0 * log(unit(w.z) + 5.9604645e-8));
            let a0 = sincos_turn(w.y);
            let a1 = sincos_turn(w.w);
            out = p.lo + p.hi * vec4<f32>(r0 * a0.y, r0 * a0.x, r1 * a1.y, r1 * a1.x);
        }
        default: {
            out = select(vec4<f32>(-1.0), vec4<f32>(1.0), (w >> vec4<u32>(31u)) == vec4<u32>(1u));
        }
    }
    for (var j = 0u; j < 4u; j++) {
        if base + j < p.n {
            y[base + j] = out[j];
        }
    }
}
