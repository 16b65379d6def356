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
            let t0 = 6.2831855 * unit(w.y);
            let t1 = 6.2831855 * unit(w.w);
            out = p.lo + p.hi * vec4<f32>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1));
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
