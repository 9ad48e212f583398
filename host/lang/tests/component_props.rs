//! Random well-typed programs give the same outputs through the IR evaluator and through
//! their emitted component, run by the component host on the plaintext backend.

mod common;

use std::collections::HashMap;

use common::{program, values};
use proptest::prelude::*;
use qvm_core::Fp;
use qvm_lang::emit::emit;
use qvm_lang::eval::evaluate;
use qvm_runtime::{Field, PlaintextBackend, Runtime, RuntimeConfig, Value};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn component_equals_the_evaluator(src in program(), x in values(3), s in values(3), t in -20i128..=20, f in any::<bool>()) {
        let Ok(ir) = qvm_lang::compile_ir(&src) else {
            // Refused by the range analysis: nothing to compare.
            return Ok(());
        };
        let inputs = HashMap::from([("x".to_string(), x.clone()), ("f".to_string(), vec![f as i128])]);
        let secrets = HashMap::from([("s".to_string(), s), ("t".to_string(), vec![t])]);
        let expected = evaluate(&ir, &inputs, &secrets).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let bytes = emit(&ir).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let tokio = tokio::runtime::Builder::new_current_thread().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rt: Runtime<PlaintextBackend> = Runtime::new(RuntimeConfig::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let program = rt.load(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let plain: HashMap<String, Vec<Fp>> = secrets.iter().map(|(n, v)| (n.clone(), v.iter().map(|x| Fp::from_i128(*x).expect("small")).collect())).collect();
        let fields = vec![
            Field { name: "x".into(), value: Value::Ints(x.iter().map(|v| *v as i64).collect()) },
            Field { name: "f".into(), value: Value::Boolean(f) },
        ];
        let (result, _) = tokio.block_on(rt.run(&program, PlaintextBackend::new(plain, 0), fields));
        let got: Vec<(String, Vec<i128>)> = result
            .map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?
            .into_iter()
            .map(|(n, v)| (n, v.as_slice().iter().map(|e| e.to_i128()).collect()))
            .collect();
        prop_assert_eq!(got, expected, "{}", src);
    }
}
