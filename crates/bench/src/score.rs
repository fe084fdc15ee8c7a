//! The score: `handleSummary` of `rinha.js` / `rinha-final.js`, and the result file it
//! writes (`partial-results.json` / `final-results.json`) with the same keys, order,
//! texts and number formatting, so a result compares directly with published ones.
//!
//! Pure functions of the figures a run collected; see [`crate::js`] for why the
//! arithmetic goes through decimals.

use crate::js::{
    big_add, big_mul, big_percent_string, big_profit, big_round, big_sub, js_string, serialize_js,
};
use crate::scenario::{Scenario, ScoreSource};
use serde::Serialize;

/// The fine when any inconsistency was found (`contains_inconsistencies ? 0.35 : 0`).
pub const FINE: f64 = 0.35;

/// k6's percentile of a Trend (`TrendSink.P`): on the sorted sample, the value at
/// rank `pct × (n − 1)`, linearly interpolated between the two nearest values.
/// `sorted` must be sorted ascending; 0 for an empty sample.
pub fn k6_percentile(sorted: &[f64], pct: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0],
        n => {
            let i = pct * (n as f64 - 1.0);
            let j = sorted[i.floor() as usize];
            let k = sorted[i.ceil() as usize];
            j + (k - j) * (i - i.floor())
        }
    }
}

/// `new Big(p99).round(2).toNumber()`: the p99 in ms as the score uses it.
pub fn round_p99(p99_ms: f64) -> f64 {
    big_round(p99_ms, 2)
}

/// `Math.max(new Big((11 - p_99) * 0.02).round(2).toNumber(), 0)`, with `p_99`
/// already rounded. The product is a double product, as in the script: `(11 - 1.25)
/// * 0.02` is `0.195` and rounds to 0.2.
pub fn bonus(p99_rounded: f64) -> f64 {
    big_round((11.0 - p99_rounded) * 0.02, 2).max(0.0)
}

/// The fine as a fraction: 0.35 when the checker counted anything, else 0.
pub fn fine(inconsistencies: f64) -> f64 {
    if inconsistencies > 0.0 {
        FINE
    } else {
        0.0
    }
}

/// One processor's `GET /admin/payments-summary` answer (zeros when it failed, as
/// `getPPPaymentsSummary` returns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessorSummary {
    pub total_requests: f64,
    pub total_amount: f64,
    pub fee_per_transaction: f64,
}

/// The backend's `GET /payments-summary` answer (zeros when it failed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BackendSummary {
    pub default_requests: f64,
    pub default_amount: f64,
    pub fallback_requests: f64,
    pub fallback_amount: f64,
}

/// What `handleSummary` reads: k6's metrics at the end of the test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inputs {
    pub scenario: Scenario,
    pub participant: String,
    /// `MAX_REQUESTS` as given (the published runs pass it through `-e`, so it is
    /// printed as a string).
    pub max_requests: String,
    /// `transactions_success`: POSTs answered 200/201/202/204.
    pub successes: u64,
    /// `transactions_failure`: every other POST (other statuses, timeouts, errors).
    pub failures: u64,
    /// `payments_inconsistency`: the sum of every check.
    pub inconsistencies: f64,
    /// p(99) of `http_req_duration{expected_response:true}`, in ms, unrounded.
    pub p99_ms: f64,
    /// Teardown reads.
    pub default: ProcessorSummary,
    pub fallback: ProcessorSummary,
    /// Only read in the preview.
    pub backend: Option<BackendSummary>,
    /// `new Date().toISOString()` when the summary is made.
    pub timestamp: String,
}

/// The figures `handleSummary` computes, as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub total_liquido: f64,
    pub total_bruto: f64,
    pub total_taxas: f64,
    pub p99: f64,
    pub bonus: f64,
    pub fine: f64,
    pub fine_total: f64,
    pub lag: f64,
    pub counted: f64,
    pub default_amount: f64,
    pub default_requests: f64,
    pub default_fee: f64,
    pub fallback_amount: f64,
    pub fallback_requests: f64,
    pub fallback_fee: f64,
}

impl Score {
    /// `lag < 0`: the backend recorded more payments than were requested ("caixa
    /// dois"), which disqualifies.
    pub fn caixa_dois(&self) -> bool {
        self.lag < 0.0
    }
}

/// `teardown` + `handleSummary`, number for number.
pub fn compute(inputs: &Inputs) -> Score {
    // Teardown: which summary pays (backend in the preview, processors in the final);
    // fees always use the processors' feePerTransaction.
    let (d_amount, d_requests, f_amount, f_requests) =
        match (inputs.scenario.score_source(), inputs.backend) {
            (ScoreSource::Backend, Some(b)) => (
                b.default_amount,
                b.default_requests,
                b.fallback_amount,
                b.fallback_requests,
            ),
            (ScoreSource::Backend, None) => (0.0, 0.0, 0.0, 0.0),
            (ScoreSource::Processors, _) => (
                inputs.default.total_amount,
                inputs.default.total_requests,
                inputs.fallback.total_amount,
                inputs.fallback.total_requests,
            ),
        };
    let total_bruto = big_add(d_amount, f_amount);
    let default_fee = big_mul(inputs.default.fee_per_transaction, d_amount);
    let fallback_fee = big_mul(inputs.fallback.fee_per_transaction, f_amount);
    // handleSummary.
    let total_taxas = big_add(default_fee, fallback_fee);
    let p99 = round_p99(inputs.p99_ms);
    let bonus = bonus(p99);
    let fine = fine(inputs.inconsistencies);
    let counted = d_requests + f_requests;
    let lag = inputs.successes as f64 - counted;
    let liquid_partial = big_sub(total_bruto, total_taxas);
    let total_liquido = big_profit(liquid_partial, bonus, fine);
    Score {
        total_liquido,
        total_bruto,
        total_taxas,
        p99,
        bonus,
        fine,
        fine_total: big_mul(liquid_partial, fine),
        lag,
        counted,
        default_amount: d_amount,
        default_requests: d_requests,
        default_fee,
        fallback_amount: f_amount,
        fallback_requests: f_requests,
        fallback_fee,
    }
}

/// The ceiling of a run, the figure routing policies are compared with: every
/// successful payment through the default processor at the scenario's default fee,
/// at the run's own `bonus` (from its own p99, so that the share of the ceiling
/// measures routing, not latency) and no fine.
pub fn ceiling(scenario: Scenario, successes: u64, bonus: f64) -> f64 {
    let gross = big_mul(successes as f64, scenario.amount());
    let fees = big_mul(scenario.fees().0, gross);
    big_profit(big_sub(gross, fees), bonus, 0.0)
}

const DESC_TOTAL: &str = "'total_liquido' é sua pontuação final. Equivale ao seu lucro. Fórmula: total_liquido + (total_liquido * p99.bonus) - (total_liquido * multa.porcentagem)";
const DESC_P99: &str = "Fórmula para o bônus: max((11 - p99.valor) * 0.02, 0)";
const DESC_MULTA: &str = "Se 'num_inconsistencias' > 0, há multa de 35%.";
const DESC_CAIXA_DOIS: &str = "Se 'lag' for negativo, significa que seu backend registrou mais pagamentos do que solicitado, automaticamente desclassificando sua submissão!";
const DESC_LAG: &str = "Lag é a diferença entre a quantidade de solicitações de pagamentos e o que foi realmente computado pelo backend. Mostra a perda de pagamentos possivelmente por estarem enfileirados.";
const DESC_SOLICITADOS: &str = "'qtd_sucesso' foram requests bem sucedidos para 'POST /payments' e 'qtd_falha' os requests com erro.";
const DESC_DEFAULT: &str =
    "Informações do backend sobre solicitações de pagamento para o Payment Processor Default.";
const DESC_FALLBACK: &str =
    "Informações do backend sobre solicitações de pagamento para o Payment Processor Fallback.";

/// The official result file. Field order, names and texts are those of the
/// `custom_data` object of the scripts; numbers print as `JSON.stringify` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct OfficialResults {
    pub timestamp: String,
    pub participante: String,
    #[serde(serialize_with = "serialize_js")]
    pub total_liquido: f64,
    #[serde(serialize_with = "serialize_js")]
    pub total_bruto: f64,
    #[serde(serialize_with = "serialize_js")]
    pub total_taxas: f64,
    pub descricao: &'static str,
    pub p99: P99,
    pub multa: Multa,
    pub caixa_dois: CaixaDois,
    pub lag: Lag,
    pub pagamentos_solicitados: Solicitados,
    pub pagamentos_realizados_default: Realizados,
    pub pagamentos_realizados_fallback: Realizados,
}

#[derive(Debug, Clone, Serialize)]
pub struct P99 {
    pub valor: String,
    pub bonus: String,
    pub max_requests: String,
    pub descricao: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Multa {
    #[serde(serialize_with = "serialize_js")]
    pub porcentagem: f64,
    #[serde(serialize_with = "serialize_js")]
    pub total: f64,
    pub composicao: Composicao,
}

#[derive(Debug, Clone, Serialize)]
pub struct Composicao {
    #[serde(serialize_with = "serialize_js")]
    pub num_inconsistencias: f64,
    pub descricao: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaixaDois {
    pub detectado: bool,
    pub descricao: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    #[serde(serialize_with = "serialize_js")]
    pub num_pagamentos_total: f64,
    #[serde(serialize_with = "serialize_js")]
    pub num_pagamentos_solicitados: f64,
    #[serde(serialize_with = "serialize_js")]
    pub lag: f64,
    pub descricao: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Solicitados {
    #[serde(serialize_with = "serialize_js")]
    pub qtd_sucesso: f64,
    #[serde(serialize_with = "serialize_js")]
    pub qtd_falha: f64,
    pub descricao: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Realizados {
    #[serde(serialize_with = "serialize_js")]
    pub total_bruto: f64,
    #[serde(serialize_with = "serialize_js")]
    pub num_pagamentos: f64,
    #[serde(serialize_with = "serialize_js")]
    pub total_taxas: f64,
    pub descricao: &'static str,
}

impl OfficialResults {
    pub fn new(inputs: &Inputs, s: &Score) -> OfficialResults {
        OfficialResults {
            timestamp: inputs.timestamp.clone(),
            participante: inputs.participant.clone(),
            total_liquido: s.total_liquido,
            total_bruto: s.total_bruto,
            total_taxas: s.total_taxas,
            descricao: DESC_TOTAL,
            p99: P99 {
                valor: format!("{}ms", js_string(s.p99)),
                bonus: format!("{}%", big_percent_string(s.bonus)),
                max_requests: inputs.max_requests.clone(),
                descricao: DESC_P99,
            },
            multa: Multa {
                porcentagem: s.fine,
                total: s.fine_total,
                composicao: Composicao {
                    num_inconsistencias: inputs.inconsistencies,
                    descricao: DESC_MULTA,
                },
            },
            caixa_dois: CaixaDois {
                detectado: s.caixa_dois(),
                descricao: DESC_CAIXA_DOIS,
            },
            lag: Lag {
                num_pagamentos_total: s.counted,
                num_pagamentos_solicitados: inputs.successes as f64,
                lag: s.lag,
                descricao: DESC_LAG,
            },
            pagamentos_solicitados: Solicitados {
                qtd_sucesso: inputs.successes as f64,
                qtd_falha: inputs.failures as f64,
                descricao: DESC_SOLICITADOS,
            },
            pagamentos_realizados_default: Realizados {
                total_bruto: s.default_amount,
                num_pagamentos: s.default_requests,
                total_taxas: s.default_fee,
                descricao: DESC_DEFAULT,
            },
            pagamentos_realizados_fallback: Realizados {
                total_bruto: s.fallback_amount,
                num_pagamentos: s.fallback_requests,
                total_taxas: s.fallback_fee,
                descricao: DESC_FALLBACK,
            },
        }
    }

    /// `JSON.stringify(custom_data, null, 2)`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preview_inputs(n: u64, p99: f64, inconsistencies: f64) -> Inputs {
        let amount = big_mul(n as f64, 19.9);
        Inputs {
            scenario: Scenario::Preview,
            participant: "anonymous".into(),
            max_requests: "550".into(),
            successes: n,
            failures: 0,
            inconsistencies,
            p99_ms: p99,
            default: ProcessorSummary {
                total_requests: n as f64,
                total_amount: amount,
                fee_per_transaction: 0.05,
            },
            fallback: ProcessorSummary {
                fee_per_transaction: 0.15,
                ..Default::default()
            },
            backend: Some(BackendSummary {
                default_requests: n as f64,
                default_amount: amount,
                fallback_requests: 0.0,
                fallback_amount: 0.0,
            }),
            timestamp: "2025-07-10T12:00:00.000Z".into(),
        }
    }

    #[test]
    fn published_preview_ceiling_figure() {
        // SPEC §3: 16,752 payments of 19.90, all default at 5%, p99 1.25 ms.
        let s = compute(&preview_inputs(16_752, 1.25, 0.0));
        assert_eq!(s.total_bruto, 333_364.8);
        assert_eq!(s.total_taxas, 16_668.24);
        assert_eq!(s.bonus, 0.2);
        assert_eq!(s.total_liquido, 380_035.872);
        assert_eq!(s.lag, 0.0);
        let json = OfficialResults::new(&preview_inputs(16_752, 1.25, 0.0), &s).to_json();
        assert!(json.contains("\"total_liquido\": 380035.872,"), "{json}");
        assert!(json.contains("\"valor\": \"1.25ms\""), "{json}");
        assert!(json.contains("\"bonus\": \"20%\""), "{json}");
        assert!(json.contains("\"porcentagem\": 0,"), "{json}");
    }

    #[test]
    fn published_final_result_of_100f_java_1() {
        // participantes/100f-java-1/final-results.json of the official repository.
        let inputs = Inputs {
            scenario: Scenario::Final,
            participant: "100f-java-1".into(),
            max_requests: "603".into(),
            successes: 90_520,
            failures: 0,
            inconsistencies: 126.0,
            p99_ms: 9.6,
            default: ProcessorSummary {
                total_requests: 5944.0,
                total_amount: 119_177.2,
                fee_per_transaction: 0.07,
            },
            fallback: ProcessorSummary {
                total_requests: 1412.0,
                total_amount: 28_310.6,
                fee_per_transaction: 0.1,
            },
            backend: None,
            timestamp: "2025-08-20T22:58:48.560Z".into(),
        };
        let s = compute(&inputs);
        assert_eq!(s.total_liquido, 92693.74848);
        assert_eq!(s.total_bruto, 147_487.8);
        assert_eq!(s.total_taxas, 11_173.464);
        assert_eq!(s.fine_total, 47710.0176);
        assert_eq!(s.default_fee, 8342.404);
        assert_eq!(s.fallback_fee, 2831.06);
        assert_eq!(s.lag, 83_164.0);
        let r = OfficialResults::new(&inputs, &s);
        assert_eq!(r.p99.valor, "9.6ms");
        assert_eq!(r.p99.bonus, "3%");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let mut expected = vec![
            "timestamp",
            "participante",
            "total_liquido",
            "total_bruto",
            "total_taxas",
            "descricao",
            "p99",
            "multa",
            "caixa_dois",
            "lag",
            "pagamentos_solicitados",
            "pagamentos_realizados_default",
            "pagamentos_realizados_fallback",
        ];
        expected.sort();
        let mut keys = keys;
        keys.sort();
        assert_eq!(keys, expected);
        // Order as in the script (serde_json's map is sorted, so check the text).
        let text = r.to_json();
        let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(pos("timestamp") < pos("participante"));
        assert!(pos("participante") < pos("total_liquido"));
        assert!(pos("caixa_dois") < pos("lag"));
        assert!(text.contains("\"total_liquido\": 92693.74848,"));
        assert!(text.contains("\"num_inconsistencias\": 126,"));
    }

    #[test]
    fn published_preview_result_of_100f_java_1() {
        // participantes/100f-java-1/partial-results.json: 3.99 ms, 14%, no fine.
        let inputs = Inputs {
            successes: 16_740,
            p99_ms: 3.99,
            backend: Some(BackendSummary {
                default_requests: 1051.0,
                default_amount: 20_914.9,
                fallback_requests: 274.0,
                fallback_amount: 5452.6,
            }),
            ..preview_inputs(0, 0.0, 0.0)
        };
        let s = compute(&inputs);
        assert_eq!(s.total_bruto, 26_367.5);
        assert_eq!(s.total_taxas, 1863.635);
        assert_eq!(s.default_fee, 1045.745);
        assert_eq!(s.fallback_fee, 817.89);
        assert_eq!(s.bonus, 0.14);
        assert_eq!(s.total_liquido, 27934.4061);
        assert_eq!(s.lag, 15_415.0);
    }

    #[test]
    fn p99_and_bonus_rounding_edges() {
        assert_eq!(round_p99(1.254_999), 1.25);
        assert_eq!(round_p99(1.255), 1.26);
        assert_eq!(round_p99(1.2449), 1.24);
        assert_eq!(bonus(1.25), 0.2);
        assert_eq!(bonus(1.26), 0.19);
        assert_eq!(bonus(1.24), 0.2);
        assert_eq!(bonus(0.75), 0.21);
        assert_eq!(bonus(0.76), 0.2);
        assert_eq!(bonus(0.25), 0.22);
        assert_eq!(bonus(0.0), 0.22);
        assert_eq!(bonus(10.75), 0.01);
        assert_eq!(bonus(10.76), 0.0);
        assert_eq!(bonus(11.0), 0.0);
        assert_eq!(bonus(1500.0), 0.0);
        // An unrounded 1.255 ms p99 loses a percent: 1.26 -> 19%.
        assert_eq!(bonus(round_p99(1.255)), 0.19);
    }

    #[test]
    fn fine_and_caixa_dois() {
        let s = compute(&preview_inputs(100, 1.0, 1.0));
        assert_eq!(s.fine, 0.35);
        let mut inputs = preview_inputs(100, 1.0, 0.0);
        inputs.successes = 99;
        let s = compute(&inputs);
        assert_eq!(s.lag, -1.0);
        assert!(s.caixa_dois());
        assert!(OfficialResults::new(&inputs, &s)
            .to_json()
            .contains("\"detectado\": true"));
    }

    #[test]
    fn final_scores_from_the_processors_not_the_backend() {
        let mut inputs = preview_inputs(10, 1.0, 0.0);
        inputs.scenario = Scenario::Final;
        inputs.backend = Some(BackendSummary {
            default_requests: 1000.0,
            default_amount: 19_900.0,
            ..Default::default()
        });
        let s = compute(&inputs);
        assert_eq!(s.counted, 10.0);
        assert_eq!(s.total_bruto, 199.0);
    }

    #[test]
    fn k6_percentiles_interpolate() {
        assert_eq!(k6_percentile(&[], 0.99), 0.0);
        assert_eq!(k6_percentile(&[3.0], 0.99), 3.0);
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(k6_percentile(&v, 0.99), 100.0);
        assert_eq!(k6_percentile(&v, 0.5), 51.0);
        let v = [1.0, 2.0];
        assert!((k6_percentile(&v, 0.99) - 1.99).abs() < 1e-12);
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        // rank 0.99 * 999 = 989.01 -> 989 + 0.01.
        assert!((k6_percentile(&v, 0.99) - 989.01).abs() < 1e-9);
    }

    #[test]
    fn ceilings() {
        // At the run's own bonus: at p99 1.25 ms (20%) it is SPEC §3's ceiling figure,
        // 16,752 × 19.90 × 0.95 × 1.20 (what `published_preview_ceiling_figure` scores).
        assert_eq!(ceiling(Scenario::Preview, 16_752, 0.2), 380_035.872);
        let run = compute(&preview_inputs(16_752, 1.25, 0.0));
        assert_eq!(
            ceiling(Scenario::Preview, 16_752, run.bonus),
            run.total_liquido
        );
        // 16,752 × 19.90 × 0.95 × 1.22 at p99 0.
        assert_eq!(ceiling(Scenario::Preview, 16_752, bonus(0.0)), 386369.8032);
        assert!(ceiling(Scenario::Final, 0, 0.2) == 0.0);
    }
}
