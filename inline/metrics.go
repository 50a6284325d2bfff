package inline

import (
	"sync/atomic"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the daemon's Prometheus metrics. Counters the fast path keeps
// (exit reasons) are read from BPF at scrape time by collector; the rest are
// updated by the sample loop and the sweeper.
type metrics struct {
	samples     prometheus.Counter
	loopCPU     prometheus.Counter
	undecodable prometheus.Counter
	verdicts    *prometheus.CounterVec
	// verdictCtr caches verdicts' children by class and source: a
	// label lookup hashes its strings and takes the vector's lock, once
	// per new flow.
	verdictCtr     [4][8]atomic.Pointer[counterRef]
	revocations    *prometheus.CounterVec
	flows          *prometheus.GaugeVec
	verdictPackets *prometheus.GaugeVec
	verdictBytes   *prometheus.GaugeVec
	mapEntries     *prometheus.GaugeVec
	latency        prometheus.Histogram
	expired        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, prog *ebpf.Program) *metrics {
	m := &metrics{
		samples: prometheus.NewCounter(prometheus.CounterOpts{Name: "espy_samples_total", Help: "Frames of new ESP flows the fast path sent to userspace."}),
		loopCPU: prometheus.NewCounter(prometheus.CounterOpts{Name: "espy_sample_loop_cpu_seconds_total",
			Help: "CPU time of the thread that reads samples, decides and writes verdicts."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "espy_samples_undecodable_total", Help: "Samples the userspace decoder rejected."}),
		verdicts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "espy_verdicts_total", Help: "Verdicts reached, by verdict and source."}, []string{"verdict", "source"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "espy_verdict_revocations_total", Help: "Verdicts withdrawn, by reason."}, []string{"reason"}),
		flows:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "espy_flows", Help: "Flows in the userspace flow table, by state."}, []string{"state"}),
		verdictPackets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "espy_flow_packets", Help: "Packets of the flows in the BPF verdict map at the last sweep, by verdict."},
			[]string{"verdict"}),
		verdictBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "espy_flow_bytes", Help: "Bytes of the flows in the BPF verdict map at the last sweep, by verdict."},
			[]string{"verdict"}),
		mapEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "espy_map_entries", Help: "Entries and capacity of the BPF verdict map at the last sweep."}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "espy_verdict_latency_seconds", Help: "Time from a flow's first sample to its verdict in the BPF map.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "espy_flows_expired_total", Help: "Flows removed from the BPF verdict map for idleness."}),
	}
	reg.MustRegister(m.samples, m.loopCPU, m.undecodable, m.verdicts, m.revocations, m.flows,
		m.verdictPackets, m.verdictBytes, m.mapEntries, m.latency, m.expired, &exitCollector{prog: prog})
	return m
}

type counterRef struct{ c prometheus.Counter }

// verdict returns espy_verdicts_total's counter for class c and source src.
func (m *metrics) verdict(c heuristics.Class, src heuristics.Source) prometheus.Counter {
	if int(c) >= len(m.verdictCtr) || int(src) >= len(m.verdictCtr[0]) {
		return m.verdicts.WithLabelValues(c.String(), src.String())
	}
	p := &m.verdictCtr[c][src]
	if r := p.Load(); r != nil {
		return r.c
	}
	r := &counterRef{m.verdicts.WithLabelValues(c.String(), src.String())}
	p.Store(r) // a racing store holds the same child
	return r.c
}

// exitCollector reads the fast path's exit-reason counters at scrape time,
// and from them the lost samples: the program counts every sample the
// kernel could not write (sample-lost) when it happens, while the perf
// reader learns of them only from a lost-records report that comes with a
// later sample, so a counter fed by the reader lags after a burst.
type exitCollector struct{ prog *ebpf.Program }

var (
	exitDesc = prometheus.NewDesc("espy_xdp_packets_total", "Frames the XDP program handled, by exit reason.", []string{"reason"}, nil)
	lostDesc = prometheus.NewDesc("espy_samples_lost_total", "Samples the fast path could not write because the sample ring was full (its sample-lost counter, read at scrape time).", nil, nil)
)

func (c *exitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- exitDesc
	ch <- lostDesc
}

func (c *exitCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.prog.ExitCounters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(exitDesc, err)
		ch <- prometheus.NewInvalidMetric(lostDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(counts[ebpf.ExitSampleLost]))
	for r, n := range counts {
		ch <- prometheus.MustNewConstMetric(exitDesc, prometheus.CounterValue, float64(n), ebpf.ExitReason(r).String())
	}
}
