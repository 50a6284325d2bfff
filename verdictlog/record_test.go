package verdictlog_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/verdictlog"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func records() []verdictlog.Record {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC)
	null := &flowcache.Flow{
		Packets: 3, Bytes: 420, First: t0.UnixNano(), Last: t0.UnixNano(),
		Verdict: heuristics.Verdict{Class: heuristics.Null, Source: heuristics.SourceHeuristic, Mode: heuristics.ModeTunnel,
			ICVLen: 12, NextHeader: 4, Packets: 1, Score: 71,
			Evidence: heuristics.EvNextHeader | heuristics.EvIPv4Header | heuristics.EvIPv4Checksum | heuristics.EvTCPChecksum},
	}
	nat := &flowcache.Flow{
		Packets: 9, Bytes: 1800, Encap: packet.EncapUDP, SrcPort: 40123, DstPort: 4500, Flags: flowcache.FlagMoved,
		Verdict: heuristics.Verdict{Class: heuristics.Encrypted, Source: heuristics.SourceHeuristic, Packets: 2, Evidence: heuristics.EvSeqIncreasing},
	}
	unknown := &flowcache.Flow{Packets: 1, Bytes: 90, Flags: flowcache.FlagWESP}
	inner := &heuristics.Inner{Src: netip.MustParseAddr("203.0.113.5"), Dst: netip.MustParseAddr("203.0.113.80"), Proto: 6, SrcPort: 40000, DstPort: 80}
	k4 := flowcache.NewKey(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20"), 0xdeadbeef)
	k6 := flowcache.NewKey(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 0x1000)
	return []verdictlog.Record{
		{Action: verdictlog.ActionVerdict, Time: t0, Key: k4, Flow: null, Inner: inner},
		{Action: verdictlog.ActionRevoked, Time: t0, Key: k4, Flow: null, Reason: heuristics.Garbage},
		{Action: verdictlog.ActionFlowEnd, Time: t0, Key: k6, Flow: nat},
		{Action: verdictlog.ActionFlowEnd, Time: t0, Key: k6, Flow: unknown, Evicted: true},
	}
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	w := verdictlog.NewWriter(&buf)
	for _, r := range records() {
		if err := w.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if !json.Valid(line) {
			t.Errorf("invalid JSON: %s", line)
		}
	}
	const golden = "testdata/records.jsonl"
	if *update {
		os.WriteFile(golden, buf.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("records differ from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
	}
}

func TestAppendDoesNotAllocate(t *testing.T) {
	recs := records()
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range recs {
			buf = verdictlog.Append(buf[:0], &recs[i], "")
		}
	})
	if allocs != 0 {
		t.Errorf("Append allocates %.1f times per run, want 0", allocs)
	}
}

func BenchmarkAppend(b *testing.B) {
	r := records()[0]
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = verdictlog.Append(buf[:0], &r, "")
	}
}
