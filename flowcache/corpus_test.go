package flowcache_test

import (
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// TestLabelledCorpus runs espsynth captures (every flow shape the generator
// draws, interleaved, with background traffic) through the decoder and the
// cache and scores every flow against its label: no encrypted flow is ever
// called null, every flow of two or more packets is decided as labelled,
// and null verdicts carry the labelled ICV length, IV length and mode.
func TestLabelledCorpus(t *testing.T) {
	for _, seed := range []int64{11, 12, 13} {
		g, err := espsynth.NewGenerator(seed, espsynth.Config{NumFlows: 400, Packets: 12000, Background: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{}
		c := newCache(t, small, rec)
		var d packet.Decoder
		var p packet.Packet
		var buf []byte
		var last int64
		for {
			f, ts, err := g.AppendPacket(buf[:0])
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			buf = f
			if d.Decode(packet.LinkTypeEthernet, f, &p) != nil || (p.Kind != packet.KindESP && p.Kind != packet.KindWESP) {
				continue
			}
			last = ts.UnixNano()
			c.Process(&p, len(f), last)
		}
		score := map[string]int{}
		labels := g.Labels("synth.pcap")
		for _, l := range labels {
			k := flowcache.NewKey(netip.MustParseAddr(l.Src), netip.MustParseAddr(l.Dst), l.SPI)
			f, ok := c.Lookup(k)
			if !ok {
				t.Errorf("seed %d: flow %s→%s %#x missing", seed, l.Src, l.Dst, l.SPI)
				continue
			}
			v := f.Verdict
			score[l.Verdict+"→"+v.Class.String()]++
			if int(f.Packets) != l.Packets {
				t.Errorf("seed %d: flow %#x counted %d packets, label %d", seed, l.SPI, f.Packets, l.Packets)
			}
			if wantUDP := l.Encap == "udp"; wantUDP != (f.Encap == packet.EncapUDP) || (wantUDP && (int(f.SrcPort) != *l.Sport || int(f.DstPort) != *l.Dport)) {
				t.Errorf("seed %d: flow %#x carrier %v %d→%d, label %s", seed, l.SPI, f.Encap, f.SrcPort, f.DstPort, l.Encap)
			}
			switch {
			case v.Class == heuristics.Null && l.Verdict != "null":
				t.Errorf("seed %d: FALSE NULL: %s/%s %s %s: %+v", seed, l.Cipher, l.Auth, l.Mode, l.Inner, v)
			case v.Class == heuristics.Null:
				if int(v.ICVLen) != l.ICVLen || int(v.IVLen) != l.IVLen || v.Mode.String() != l.Mode {
					t.Errorf("seed %d: %s/%s %s %s: verdict icv %d iv %d %v, label icv %d iv %d", seed, l.Cipher, l.Auth, l.Mode, l.Inner,
						v.ICVLen, v.IVLen, v.Mode, l.ICVLen, l.IVLen)
				}
			case l.Packets >= 2 && v.Class.String() != l.Verdict:
				t.Errorf("seed %d: %s/%s %s %s %s, %d packets: %v, label %s (evidence %v)", seed, l.Cipher, l.Auth, l.Mode, l.Inner, l.Padding,
					l.Packets, v.Class, l.Verdict, v.Evidence)
			}
		}
		t.Logf("seed %d: %d flows: %v", seed, len(labels), score)
		if score["null→null"] < len(labels)/4 || score["encrypted→encrypted"] < len(labels)/4 {
			t.Errorf("seed %d: corpus too one-sided: %v", seed, score)
		}
		if n := rec.count(flowcache.EventRevoked, nil); n != 0 {
			t.Errorf("seed %d: %d revocations on clean traffic", seed, n)
		}
		// Everything expires once the capture is ten minutes old.
		c.Sweep(last + 11*60*1e9)
		if st := c.Stats(); st.Decided != 0 || st.Pending != 0 || st.Expired != uint64(len(labels)) {
			t.Errorf("seed %d: after the final sweep: %+v", seed, st)
		}
	}
}
