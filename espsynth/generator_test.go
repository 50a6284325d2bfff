package espsynth_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
)

// corpusLabels is the shared corpus whose label format the package follows.
const corpusLabels = "/work/shared/corpus/synth/labels.jsonl"

func writeAll(t *testing.T, seed int64, cfg espsynth.Config) (pcap, labels []byte) {
	t.Helper()
	g, err := espsynth.NewGenerator(seed, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var p, l bytes.Buffer
	if err := g.WritePcap(&p, &l, "x.pcap"); err != nil {
		t.Fatal(err)
	}
	return p.Bytes(), l.Bytes()
}

func TestDeterministic(t *testing.T) {
	cfg := espsynth.Config{NumFlows: 31, Packets: 3000, Background: 0.1}
	p1, l1 := writeAll(t, 42, cfg)
	p2, l2 := writeAll(t, 42, cfg)
	if !bytes.Equal(p1, p2) || !bytes.Equal(l1, l2) {
		t.Fatal("same seed and config gave different output")
	}
	p3, _ := writeAll(t, 43, cfg)
	if bytes.Equal(p1, p3) {
		t.Fatal("different seeds gave the same capture")
	}
}

func TestDrawFlows(t *testing.T) {
	for _, tc := range []struct{ flows, packets int }{
		{1, 1}, {2, 2}, {3, 3}, {7, 100}, {100, 100}, {101, 5000}, {400, 20000},
	} {
		c := generate(t, int64(tc.flows), espsynth.Config{NumFlows: tc.flows, Packets: tc.packets})
		if len(c.labels) != tc.flows {
			t.Errorf("%d flows, %d packets: %d labels", tc.flows, tc.packets, len(c.labels))
		}
		sum, verdicts := 0, map[string]int{}
		for _, l := range c.labels {
			sum += l.Packets
			verdicts[l.Verdict]++
			if l.Packets < 1 {
				t.Errorf("label with %d packets", l.Packets)
			}
		}
		if sum != tc.packets || len(c.frames) != tc.packets {
			t.Errorf("%d flows, %d packets: labels count %d, capture has %d frames", tc.flows, tc.packets, sum, len(c.frames))
		}
		if tc.flows >= 100 && (verdicts["null"] < tc.flows/4 || verdicts["encrypted"] < tc.flows/4) {
			t.Errorf("%d flows: unbalanced verdicts %v", tc.flows, verdicts)
		}
		if tc.flows >= 400 {
			checkDrawnSpecials(t, c.labels)
		}
	}
}

// checkDrawnSpecials checks that random draws include rekeys, SPI values
// shared between address pairs and address pairs with both verdicts, and
// that their tags are true.
func checkDrawnSpecials(t *testing.T, labels []espsynth.Label) {
	t.Helper()
	tags := map[string]int{}
	bySPI := map[uint32]map[string]bool{}
	byPair := map[string]map[string]bool{}
	for _, l := range labels {
		for _, tag := range l.Tags {
			tags[tag]++
		}
		if bySPI[l.SPI] == nil {
			bySPI[l.SPI] = map[string]bool{}
		}
		bySPI[l.SPI][l.Src+">"+l.Dst] = true
		pair := min(l.Src, l.Dst) + "|" + max(l.Src, l.Dst)
		if byPair[pair] == nil {
			byPair[pair] = map[string]bool{}
		}
		byPair[pair][l.Verdict] = true
	}
	for _, tag := range []string{"rekey", "before-rekey", "rekeyed", "spi-shared", "mixed-pair", "nat", "short"} {
		if tags[tag] == 0 {
			t.Errorf("no flow tagged %s in %d", tag, len(labels))
		}
	}
	for _, l := range labels {
		pair := min(l.Src, l.Dst) + "|" + max(l.Src, l.Dst)
		if contains(l.Tags, "mixed-pair") && len(byPair[pair]) != 2 {
			t.Errorf("flow %s>%s %#x tagged mixed-pair, but its address pair has verdicts %v", l.Src, l.Dst, l.SPI, byPair[pair])
		}
	}
	shared := 0
	for _, pairs := range bySPI {
		if len(pairs) > 1 {
			shared++
		}
	}
	if shared == 0 {
		t.Error("no SPI value is used by two address pairs")
	}
}

func TestConfigErrors(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name string
		cfg  espsynth.Config
		want string
	}{
		{"no flows", espsynth.Config{}, "at least one flow"},
		{"too few packets", espsynth.Config{NumFlows: 10, Packets: 9}, "cannot fill"},
		{"background", espsynth.Config{NumFlows: 1, Packets: 1, Background: 1}, "background"},
		{"tfc transport", espsynth.Config{Flows: []espsynth.Flow{{Padding: espsynth.PaddingTFC, Packets: 2}}}, "tunnel mode"},
		{"gcm icv", espsynth.Config{Flows: []espsynth.Flow{{Cipher: espsynth.CipherAESGCM, ICVLen: 10, Packets: 2}}}, "ICV length"},
		{"one packet two SAs", espsynth.Config{Flows: []espsynth.Flow{{Packets: 1}}}, "cannot fill"},
		{"one address", espsynth.Config{Flows: []espsynth.Flow{{Initiator: v4, Packets: 2}}}, "both outer addresses"},
		{"version mismatch", espsynth.Config{Flows: []espsynth.Flow{{Initiator: v6, Responder: v6, Packets: 2}}}, "outer IP version"},
		{"nat without udp", espsynth.Config{Flows: []espsynth.Flow{{NAT: true, Packets: 2}}}, "NAT"},
		{"spi reused", espsynth.Config{Flows: []espsynth.Flow{
			{Initiator: v4, Responder: netip.MustParseAddr("192.0.2.2"), SPI: [2]uint32{300, 301}, Packets: 2},
			{Initiator: v4, Responder: netip.MustParseAddr("192.0.2.2"), SPI: [2]uint32{300, 302}, Packets: 2},
		}}, "already in use"},
	} {
		_, err := espsynth.NewGenerator(1, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestFixedAddressesAndSPIs(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::b")
	c := generate(t, 1, espsynth.Config{Flows: []espsynth.Flow{{
		Outer: espsynth.IPv6, Initiator: a, Responder: b, SPI: [2]uint32{0x1000, 0x2000},
		Encap: espsynth.EncapUDP, NAT: true, Traffic: espsynth.TrafficDNS, Packets: 4,
	}}})
	if len(c.labels) != 2 {
		t.Fatalf("%d labels", len(c.labels))
	}
	l := c.labels[0]
	if l.Src != a.String() || l.Dst != b.String() || l.SPI != 0x1000 || l.Encap != "udp" || *l.Dport != 4500 || *l.Sport == 4500 || !contains(l.Tags, "nat") {
		t.Errorf("initiator label %+v", l)
	}
	if r := c.labels[1]; r.SPI != 0x2000 || *r.Sport != 4500 || *r.Dport != *l.Sport {
		t.Errorf("responder label %+v", r)
	}
}

// TestLabelFormat re-encodes every label of the shared corpus and expects
// the very same bytes, so generated labels are interchangeable with it.
func TestLabelFormat(t *testing.T) {
	sp, dp := 4500, 61000
	l := espsynth.Label{
		Pcap: "a.pcap", Src: "192.0.2.1", Dst: "2001:db8::1", SPI: 4294967295, Verdict: "null",
		ICVLen: 12, IVLen: 0, Mode: "tunnel", Encap: "udp", Inner: "ipv4/tcp", Auth: "HMAC-SHA1-96",
		Cipher: "NULL", Packets: 3, Outer: "ipv4", Padding: "minimal", Sport: &sp, Dport: &dp,
		Tags: []string{"http", "short"},
	}
	want := `{"pcap": "a.pcap", "src": "192.0.2.1", "dst": "2001:db8::1", "spi": 4294967295, "verdict": "null", "icv_len": 12, "iv_len": 0, "mode": "tunnel", "encap": "udp", "inner": "ipv4/tcp", "auth": "HMAC-SHA1-96", "cipher": "NULL", "packets": 3, "outer": "ipv4", "padding": "minimal", "sport": 4500, "dport": 61000, "tags": ["http", "short"]}`
	if got := string(l.AppendJSON(nil)); got != want {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	l.Sport, l.Dport, l.Tags = nil, nil, nil
	if got := string(l.AppendJSON(nil)); !strings.HasSuffix(got, `"sport": null, "dport": null, "tags": []}`) {
		t.Errorf("AppendJSON without ports and tags: %s", got)
	}

	f, err := os.Open(corpusLabels)
	if err != nil {
		t.Skipf("shared corpus not present: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var l espsynth.Label
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("corpus line %d: %v", n+1, err)
		}
		if got := l.AppendJSON(nil); !bytes.Equal(got, sc.Bytes()) {
			t.Fatalf("corpus line %d re-encodes differently:\n got %s\nwant %s", n+1, got, sc.Bytes())
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d corpus labels re-encoded byte for byte", n)
}

// TestGeneratedLabelsUseCorpusVocabulary checks that every generated label
// value is one the corpus README defines.
func TestGeneratedLabelsUseCorpusVocabulary(t *testing.T) {
	allowed := map[string][]string{
		"verdict": {"null", "encrypted"},
		"mode":    {"tunnel", "transport"},
		"encap":   {"udp", "none"},
		"outer":   {"ipv4", "ipv6"},
		"padding": {"minimal", "extra", "tfc"},
		"auth":    {"HMAC-SHA1-96", "SHA2-256-128", "SHA2-384-192", "SHA2-512-256", "NULL", "AES-GMAC", "AEAD"},
		"cipher":  {"NULL", "ENCR_NULL_AUTH_AES_GMAC", "AES-CBC", "AES-CTR", "AES-GCM", "CHACHA20-POLY1305", "3DES"},
		"proto":   {"tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "mixed"},
		"tag": {"http", "tls", "tcp-bin", "dns", "udp-random", "icmp", "sctp", "gre", "short", "nat", "dummy-nh59",
			"rekey", "before-rekey", "rekeyed", "spi-shared", "mixed-pair"},
	}
	c := generate(t, 5, espsynth.Config{NumFlows: 300, Packets: 6000})
	for _, l := range c.labels {
		proto := l.Inner
		if i := strings.IndexByte(proto, '/'); i >= 0 {
			if l.Mode != "tunnel" || (proto[:i] != "ipv4" && proto[:i] != "ipv6" && proto[:i] != "dual") {
				t.Errorf("inner %q in %s mode", l.Inner, l.Mode)
			}
			proto = proto[i+1:]
		} else if l.Mode == "tunnel" {
			t.Errorf("tunnel-mode inner %q lacks the IP version", l.Inner)
		}
		vals := map[string][]string{
			"verdict": {l.Verdict}, "mode": {l.Mode}, "encap": {l.Encap}, "outer": {l.Outer},
			"padding": {l.Padding}, "auth": {l.Auth}, "cipher": {l.Cipher}, "proto": {proto}, "tag": l.Tags,
		}
		for k, vs := range vals {
			for _, v := range vs {
				if !contains(allowed[k], v) {
					t.Errorf("label %s %q is not in the corpus vocabulary", k, v)
				}
			}
		}
		if (l.Encap == "udp") != (l.Sport != nil && l.Dport != nil) {
			t.Errorf("encap %q with ports %v %v", l.Encap, l.Sport, l.Dport)
		}
	}
}

func TestAppendPacketDoesNotAllocate(t *testing.T) {
	g, err := espsynth.NewGenerator(1, espsynth.Config{NumFlows: 200, Packets: 1 << 30, Background: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	for range 10000 { // warm up: every SA's first packet may grow state
		buf, _, _ = g.AppendPacket(buf[:0])
	}
	allocs := testing.AllocsPerRun(20000, func() {
		buf, _, err = g.AppendPacket(buf[:0])
	})
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("AppendPacket allocates %.2f times per packet", allocs)
	}
}

func TestAppendPacketEOF(t *testing.T) {
	g, err := espsynth.NewGenerator(1, espsynth.Config{NumFlows: 2, Packets: 5})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for ; ; n++ {
		if _, _, err := g.AppendPacket(nil); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != 5 || g.Remaining() != 0 || g.Frames() != 5 {
		t.Errorf("%d frames, %d remaining, Frames %d", n, g.Remaining(), g.Frames())
	}
}

func BenchmarkAppendPacket(b *testing.B) {
	g, err := espsynth.NewGenerator(1, espsynth.Config{NumFlows: 1000, Packets: 1 << 40, Background: 0.05})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	bytes := 0
	b.ReportAllocs()
	for b.Loop() {
		buf, _, _ = g.AppendPacket(buf[:0])
		bytes += len(buf)
	}
	b.SetBytes(int64(bytes / b.N))
}
