//! Every WGSL kernel, and samples of the generated elementwise ones, parses, validates and
//! translates to SPIR-V, MSL and HLSL with naga's back-ends. Needs no GPU, so it always runs.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};

#[test]
fn every_shader_validates_and_translates() {
    assert!(resflow::gpu::kernels::SHADERS.len() >= 10);
    assert!(resflow::gpu::kernels::shader_names().count() > resflow::gpu::kernels::SHADERS.len());
    for name in resflow::gpu::kernels::shader_names() {
        check(name, resflow::gpu::kernels::source(name));
    }
}

#[test]
fn generated_elementwise_kernels_validate_and_translate() {
    let sources = resflow::testing::example_sources();
    assert!(sources.len() >= 10);
    for (i, source) in sources.iter().enumerate() {
        check(&format!("fused example {i}"), source);
    }
}

/// Every uniform parameter struct written by Rust has the size and field offsets of the WGSL
/// `Params` struct its shader reads (naga's layout of the WGSL), and every WGSL member Rust
/// does not fill is padding.
#[test]
fn parameter_structs_match_their_wgsl() {
    let layouts = resflow::testing::param_layouts();
    assert!(layouts.len() >= 15);
    for l in &layouts {
        let source = resflow::gpu::kernels::source(l.shader);
        let module = naga::front::wgsl::parse_str(source).expect("shader parses");
        let (members, span) = module
            .types
            .iter()
            .find_map(|(_, t)| match (&t.name, &t.inner) {
                (Some(n), naga::TypeInner::Struct { members, span }) if n == "Params" => Some((members, *span)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no struct Params", l.shader));
        assert_eq!(span as usize, l.size, "{}: WGSL Params is {span} bytes, Rust's {}", l.shader, l.size);
        for (field, offset) in &l.fields {
            assert!(
                members.iter().any(|m| m.offset as usize == *offset),
                "{}: Rust field {field} at {offset} matches no WGSL member",
                l.shader
            );
        }
        for m in members {
            let name = m.name.as_deref().unwrap_or("");
            let filled = l.fields.iter().any(|(_, o)| *o == m.offset as usize);
            assert!(
                filled || name.starts_with("pad"),
                "{}: WGSL member {name} at {} is not written",
                l.shader,
                m.offset
            );
        }
    }
}

fn check(name: &str, source: &str) {
    let module =
        naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(source)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
    // Override constants take their defaults for translation.
    let (module, info) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
        .unwrap_or_else(|e| panic!("{name}.wgsl overrides: {e:?}"));
    let module = module.into_owned();
    let info = info.into_owned();

    let spirv = spv::write_vec(&module, &info, &spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{name}.wgsl → SPIR-V: {e:?}"));
    assert!(spirv.len() > 10 && spirv[0] == 0x0723_0203, "{name}: SPIR-V magic");

    for ep in &module.entry_points {
        let pipeline = msl::PipelineOptions { entry_point: Some((ep.stage, ep.name.clone())), ..Default::default() };
        let (text, _) = msl::write_string(&module, &info, &msl::Options::default(), &pipeline)
            .unwrap_or_else(|e| panic!("{name}.wgsl → MSL ({}): {e:?}", ep.name));
        assert!(text.contains("kernel"), "{name}: MSL has a kernel");
    }

    let mut hlsl_out = String::new();
    // f16 arithmetic needs HLSL shader model 6.2.
    let options = hlsl::Options { shader_model: hlsl::ShaderModel::V6_2, ..Default::default() };
    let pipeline_options = hlsl::PipelineOptions::default();
    let mut writer = hlsl::Writer::new(&mut hlsl_out, &options, &pipeline_options);
    writer.write(&module, &info, None).unwrap_or_else(|e| panic!("{name}.wgsl → HLSL: {e:?}"));
    assert!(hlsl_out.contains("numthreads"), "{name}: HLSL has numthreads");
}
