//! The api's own figures: requests by route and status class, and their latency, in
//! atomic counters (no lock on the request path), plus the HTTP server's connection
//! figures; rendered as Prometheus text beside the worker's.

use model::metrics::{Exposition, LATENCY_BUCKETS};
use netio::ServerStats;
use std::sync::atomic::{AtomicU64, Ordering};

/// Routes, for metrics.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route {
    Payments,
    Summary,
    Purge,
    Health,
    Metrics,
    Other,
}

const ROUTES: [Route; 6] = [
    Route::Payments,
    Route::Summary,
    Route::Purge,
    Route::Health,
    Route::Metrics,
    Route::Other,
];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Payments => "payments",
            Route::Summary => "payments_summary",
            Route::Purge => "purge_payments",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// One route's counters. The latency histogram is cumulative only when rendered.
#[derive(Default)]
struct RouteMetrics {
    /// Answers by status class: 2xx (and 3xx), 4xx, 5xx.
    by_class: [AtomicU64; 3],
    /// Answers per latency bucket; the last slot counts those above every bucket.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

#[derive(Default)]
pub(crate) struct ApiMetrics {
    routes: [RouteMetrics; ROUTES.len()],
}

impl ApiMetrics {
    /// Counts one answer.
    pub(crate) fn observe(&self, route: Route, status: u16, elapsed: std::time::Duration) {
        let r = &self.routes[route as usize];
        let class = match status {
            200..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        r.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        r.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        r.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The api's families, in the format `model::metrics` writes histograms.
    pub(crate) fn render(&self, x: &mut Exposition) {
        const REQUESTS: &str = "payroute_http_requests_total";
        x.family(
            REQUESTS,
            "counter",
            "HTTP requests answered by this api instance.",
        );
        for route in ROUTES {
            let r = &self.routes[route as usize];
            for (i, class) in ["2xx", "4xx", "5xx"].iter().enumerate() {
                let labels = format!("route=\"{}\",class=\"{class}\"", route.name());
                x.sample(
                    REQUESTS,
                    &labels,
                    r.by_class[i].load(Ordering::Relaxed) as f64,
                );
            }
        }
        const DURATION: &str = "payroute_http_request_duration_seconds";
        x.family(
            DURATION,
            "histogram",
            "Time from a request's head to its answer, in this api instance.",
        );
        for route in ROUTES {
            let r = &self.routes[route as usize];
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += r.buckets[i].load(Ordering::Relaxed);
                let labels = format!("route=\"{}\",le=\"{b}\"", route.name());
                x.sample(&format!("{DURATION}_bucket"), &labels, cumulative as f64);
            }
            let count = cumulative + r.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            let route_label = format!("route=\"{}\"", route.name());
            let inf = format!("{route_label},le=\"+Inf\"");
            x.sample(&format!("{DURATION}_bucket"), &inf, count as f64);
            let sum = r.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            x.sample(&format!("{DURATION}_sum"), &route_label, sum);
            x.sample(&format!("{DURATION}_count"), &route_label, count as f64);
        }
    }
}

/// The HTTP server's connection figures.
pub(crate) fn render_server(x: &mut Exposition, s: &ServerStats) {
    let gauge = |x: &mut Exposition, name: &str, help: &str, v: f64| {
        x.family(name, "gauge", help).sample(name, "", v);
    };
    let counter = |x: &mut Exposition, name: &str, help: &str, v: f64| {
        x.family(name, "counter", help).sample(name, "", v);
    };
    gauge(
        x,
        "payroute_http_connections",
        "Client connections open in this api instance.",
        s.open_connections() as f64,
    );
    gauge(
        x,
        "payroute_http_connection_cap",
        "Connections this api instance serves at once (from --max-connections and its memory and open-file limits).",
        s.plan().cap as f64,
    );
    counter(
        x,
        "payroute_http_connections_refused_total",
        "Connections refused at the cap (answered 503 or closed).",
        s.refused_connections() as f64,
    );
    counter(
        x,
        "payroute_http_requests_refused_total",
        "Requests the HTTP server answered itself: malformed, too large, too slow, overloaded.",
        s.refused_requests() as f64,
    );
    let (held, budget) = s.buffer_bytes();
    gauge(
        x,
        "payroute_http_buffer_bytes",
        "Bytes of request buffer held beyond the small per-request size.",
        held as f64,
    );
    gauge(
        x,
        "payroute_http_buffer_budget_bytes",
        "The most those buffers may hold together.",
        budget as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::metrics::Histogram;
    use std::time::Duration;

    /// The atomic histogram renders exactly as `model::metrics` renders its own.
    #[test]
    fn renders_like_the_model_histogram() {
        let m = ApiMetrics::default();
        let mut h = Histogram::default();
        for micros in [40, 3000, 100_000_000] {
            let d = Duration::from_micros(micros);
            m.observe(Route::Payments, 202, d);
            h.observe(d.as_secs_f64());
        }
        let mut ours = Exposition::new();
        m.render(&mut ours);
        let ours = ours.finish();
        let mut theirs = Exposition::new();
        theirs.histogram(
            "payroute_http_request_duration_seconds",
            "route=\"payments\"",
            &h,
        );
        for line in theirs.finish().lines() {
            assert!(
                ours.contains(&format!("{line}\n")),
                "{line} missing in\n{ours}"
            );
        }
        assert!(ours.contains("payroute_http_requests_total{route=\"payments\",class=\"2xx\"} 3\n"));
    }
}
