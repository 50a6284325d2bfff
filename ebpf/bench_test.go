package ebpf

import (
	"testing"
)

// benchXDP runs frame b.N times inside the kernel (BPF_PROG_TEST_RUN with
// repeat) and reports the kernel-measured time per packet.
func benchXDP(b *testing.B, p *Program, frame []byte, want uint32) {
	b.Helper()
	ret, _, err := p.XDP().Benchmark(frame, 1, nil)
	if err != nil || ret != want {
		b.Fatalf("warm-up: action %d, %v; want %d", ret, err, want)
	}
	b.ResetTimer()
	var total float64
	for n := b.N; n > 0; {
		chunk := min(n, 1_000_000)
		_, d, err := p.XDP().Benchmark(frame, chunk, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += float64(d.Nanoseconds()) * float64(chunk)
		n -= chunk
	}
	b.ReportMetric(total/float64(b.N), "ns/packet")
}

func benchProgram(b *testing.B, cfg Config) *Program {
	b.Helper()
	return loadTest(b, cfg)
}

func BenchmarkXDPNonESP(b *testing.B) {
	p := benchProgram(b, Config{})
	benchXDP(b, p, cat(eth(etherIPv4), ipv4(17, outerSrc4, outerDst4, udp(5353, 53, make([]byte, 64)), ip4opts{})), xdpPass)
}

func BenchmarkXDPEncrypted(b *testing.B) {
	p := benchProgram(b, Config{})
	mustVerdict(b, p, key4(b, 0x900, 0, 0, 0), encV)
	benchXDP(b, p, cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x900, 1, 400), ip4opts{})), xdpPass)
}

func BenchmarkXDPNullPolicy(b *testing.B) {
	p := benchProgram(b, Config{})
	mustVerdict(b, p, key4(b, 0x901, 0, 0, 0), nullV)
	mustRule(b, p, inner(b, 17, innerSrc4, innerDst4, 1000, 53), ActionCount)
	benchXDP(b, p, nullTunnel4(0x901, 1000, 53), xdpPass)
}

func BenchmarkXDPNullPolicyIPv6(b *testing.B) {
	p := benchProgram(b, Config{})
	mustVerdict(b, p, key6(b, 0x902), Verdict{Kind: VerdictNull, IcvLen: 16, Mode: ModeTunnel})
	mustRule(b, p, inner(b, 6, innerSrc6, innerDst6, 40000, 443), ActionCount)
	frame := cat(eth(etherIPv6), ipv6(50, outerSrc6, outerDst6, espNull(0x902, 1, 0, innerTCP6(40000, 443), 41, 16)))
	benchXDP(b, p, frame, xdpPass)
}

func BenchmarkXDPUnknownOverLimit(b *testing.B) {
	p := benchProgram(b, Config{DisableSampling: true})
	benchXDP(b, p, nullTunnel4(0x903, 1, 2), xdpPass)
}

// BenchmarkXDPUnknownSampled measures the sample path: every packet is
// copied to the sample ring, which a goroutine drains. Packets the reader
// could not keep up with are counted as lost and reported.
func BenchmarkXDPUnknownSampled(b *testing.B) {
	p := benchProgram(b, Config{NoRateLimit: true, SampleCount: 1 << 31})
	r, err := p.NewSampleReader()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var s Sample
		for r.Read(&s) == nil {
		}
	}()
	before, _ := p.ExitCounters()
	benchXDP(b, p, nullTunnel4(0x904, 1, 2), xdpPass)
	b.StopTimer()
	after, _ := p.ExitCounters()
	sampled := after[ExitPendingSampled] - before[ExitPendingSampled]
	lost := after[ExitSampleLost] - before[ExitSampleLost]
	b.ReportMetric(float64(lost)/float64(sampled+lost), "lost/packet")
	r.Close()
	<-done
}

func BenchmarkSampleRead(b *testing.B) {
	var s Sample
	raw := make([]byte, sampleHeaderLen+128)
	raw[52] = 128 // cap_len, little endian
	raw[55] = 0
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeSample(raw, &s); err != nil {
			b.Fatal(err)
		}
	}
}
