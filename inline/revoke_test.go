package inline_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// junkFrame returns a frame of the ESP flow of f (IPv4 without options, plain
// ESP) with sequence number seq whose 64-byte body is random and whose
// trailer's pad length (255) cannot fit it: under any null verdict, tunnel,
// transport or mode unknown, the fast path's parse fails. icvLen random
// bytes follow the trailer.
func junkFrame(f []byte, seq uint32, icvLen int, r *rand.Rand) []byte {
	const body = 64
	b := append([]byte(nil), f[:spiOff+4]...)
	b = binary.BigEndian.AppendUint32(b, seq)
	for range body {
		b = append(b, byte(r.Uint32()))
	}
	b = append(b, 255, byte(r.Uint32()))
	for range icvLen {
		b = append(b, byte(r.Uint32()))
	}
	ip := b[14:34]
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-14))
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < len(ip); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return b
}

// verdictLog returns the records the daemon l.start started wrote so far:
// start opens verdicts.jsonl in a directory of t.TempDir's, all of which
// share one parent.
func verdictLog(t *testing.T) []map[string]any {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(filepath.Dir(t.TempDir()), "*", "verdicts.jsonl"))
	if err != nil || len(paths) != 1 {
		t.Fatalf("verdict log: %v %v", paths, err)
	}
	fh, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []map[string]any
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("verdict log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// revokedRecords counts the esp-verdict-revoked records of spi with reason.
func revokedRecords(recs []map[string]any, spi uint32, reason string) int {
	n := 0
	for _, m := range recs {
		ev, _ := m["event"].(map[string]any)
		esp, _ := m["esp"].(map[string]any)
		if ev["action"] == "esp-verdict-revoked" && ev["reason"] == reason && esp["spi"] == float64(spi) {
			n++
		}
	}
	return n
}

// TestInlineRevocation: a flow decided null whose packets stop parsing (a
// burst of garbage under its SPI, sequence numbers rising) loses its verdict
// in the fast path and in the flow cache, with an esp-verdict-revoked record
// (reason garbage) and the revocations metric; a flow with fewer junk
// packets than MinBad keeps its verdict.
func TestInlineRevocation(t *testing.T) {
	l := newLab(t)
	frames := nullFlows(t, 2, 0x7a0000)
	d := l.start(t, "")
	s := l.sender(t)
	rc := d.Cache().Engine().Config().Revocation
	const spiGarbage, spiJunk = 0x7a0000, 0x7a0001
	keys := map[uint32]ebpf.FlowKey{spiGarbage: flowKey(t, spiGarbage), spiJunk: flowKey(t, spiJunk)}
	byspi := map[uint32][]byte{}
	for _, f := range frames {
		byspi[frameSPI(f)] = f
		if err := s.send(f); err != nil {
			t.Fatal(err)
		}
	}
	verdicts := map[uint32]ebpf.Verdict{}
	for spi, k := range keys {
		for deadline := time.Now().Add(2 * time.Second); ; {
			v, err := d.Program().Verdict(k)
			if err == nil {
				if v.Kind != ebpf.VerdictNull {
					t.Fatalf("flow %#x decided %v, want null", spi, v.Kind)
				}
				verdicts[spi] = v
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("flow %#x: no verdict after 2 s: %v", spi, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	r := rand.New(rand.NewPCG(1, 2))
	send := func(spi uint32, n int) {
		for i := range n {
			f := junkFrame(byspi[spi], uint32(2+i), int(verdicts[spi].IcvLen), r)
			if err := s.send(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	few := rc.MinBad / 2
	burst := 3 * rc.MinBad // split across two looks, one of them still holds >= MinBad
	send(spiJunk, few)
	send(spiGarbage, burst)

	deadline := time.Now().Add(3 * rc.FastWindow)
	for {
		_, err := d.Program().Verdict(keys[spiGarbage])
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			st, _ := d.Program().FlowCounters(keys[spiGarbage])
			t.Fatalf("garbage flow still has its verdict after %v (counters %+v)", 3*rc.FastWindow, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One more look for the junk flow, with its junk in the window.
	time.Sleep(rc.FastWindow + 200*time.Millisecond)

	if f, ok := d.Cache().Lookup(flowcache.NewKey(perfSrc, perfDst, spiGarbage)); !ok || f.Verdict.Class == heuristics.Null {
		t.Errorf("garbage flow in the cache: %+v (found %v), want undecided", f.Verdict, ok)
	}
	recs := verdictLog(t)
	if n := revokedRecords(recs, spiGarbage, "garbage"); n != 1 {
		t.Errorf("%d esp-verdict-revoked records (garbage) for the garbage flow, want 1; log %v", n, recs)
	}
	if got := d.metric(t, "espy_verdict_revocations_total"); got != 1 {
		t.Errorf("espy_verdict_revocations_total %v, want 1", got)
	}

	st, err := d.Program().FlowCounters(keys[spiJunk])
	if err != nil {
		t.Fatalf("junk flow lost its verdict: %v", err)
	}
	if st.Unparsed != uint64(few) {
		t.Errorf("junk flow counters %+v, want %d unparsed", st, few)
	}
	if f, _ := d.Cache().Lookup(flowcache.NewKey(perfSrc, perfDst, spiJunk)); f.Verdict.Class != heuristics.Null {
		t.Errorf("junk flow in the cache: %+v, want null", f.Verdict)
	}
	if n := revokedRecords(recs, spiJunk, "garbage"); n != 0 {
		t.Errorf("%d revoked records for the junk flow", n)
	}
	if p := d.log.problems(); len(p) > 0 {
		t.Errorf("daemon logged problems: %v", p)
	}
}
