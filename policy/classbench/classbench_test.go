package classbench

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espy-dpi/espy/policy"
)

var update = flag.Bool("update", false, "regenerate the testdata traces")

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Filter
		err  bool
	}{
		{line: "@37.184.89.216/29\t37.184.85.16/29\t7648 : 7648\t24032 : 24032\t0x11/0xFF\t0x0000/0x0000\t",
			want: Filter{Src: netip.MustParsePrefix("37.184.89.216/29"), Dst: netip.MustParsePrefix("37.184.85.16/29"),
				SPortLo: 7648, SPortHi: 7648, DPortLo: 24032, DPortHi: 24032, Proto: 0x11}},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF",
			want: Filter{Src: netip.MustParsePrefix("64.91.107.21/32"), Dst: netip.MustParsePrefix("128.222.130.81/32"),
				SPortHi: 65535, DPortLo: 1221, DPortHi: 1221, Proto: 6}},
		// Host bits below the length are masked off.
		{line: "@10.1.2.3/8 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00",
			want: Filter{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("0.0.0.0/0"), SPortHi: 65535, DPortHi: 65535, ProtoAny: true}},
		{line: "64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221", err: true},
		{line: "@64.91.107.21/33 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF", err: true},
		{line: "@2001:db8::/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 9 : 8 1221 : 1221 0x06/0xFF", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 70000 1221 : 1221 0x06/0xFF", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xF0", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x106/0xFF", err: true},
		{line: "@64.91.107.21/32 128.222.130.81/32 0 : 65535 1221 : 1221 0x06/0xFF 0x00", err: true},
	} {
		f, err := ParseFilter(tc.line)
		if tc.err {
			if err == nil {
				t.Errorf("%q: no error", tc.line)
			}
			continue
		}
		if err != nil || f != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.line, f, err, tc.want)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h, err := ParseHeader("1600753409 3271393328 65535 21 6 413")
	if err != nil {
		t.Fatal(err)
	}
	want := policy.NewPacketFromStrings("95.105.143.1", "194.253.128.48", 6, 65535, 21)
	if h.Packet != want || h.Match != 413 {
		t.Errorf("got %+v", h)
	}
	if h, err := ParseHeader("1 2 3 4 6 0 7"); err != nil || h.Match != 7 {
		t.Errorf("7 columns: %+v %v", h, err)
	}
	for _, bad := range []string{"1 2 3 4 6", "1 2 3 4 6 0", "4294967296 2 3 4 6 1", "1 2 65536 4 6 1", "1 2 3 4 256 1", "x 2 3 4 6 1"} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// match is an oracle independent of package policy's box arithmetic: the
// first filter whose fields contain the header, by the filter's own fields.
func match(fs []Filter, p policy.Packet) int {
	src := policy.U128Addr(4, p.Src)
	dst := policy.U128Addr(4, p.Dst)
	for _, f := range fs {
		if f.Src.Contains(src) && f.Dst.Contains(dst) &&
			p.SPort >= f.SPortLo && p.SPort <= f.SPortHi && p.DPort >= f.DPortLo && p.DPort <= f.DPortHi &&
			(f.ProtoAny || f.Proto == p.Proto) {
			return f.Line
		}
	}
	return -1
}

var sets = []string{"acl1_300", "fw1_300"}

// TestGenerateTraces writes the testdata traces with -update; otherwise it
// checks that they are present.
func TestGenerateTraces(t *testing.T) {
	for _, name := range sets {
		path := filepath.Join("testdata", name+".trace")
		if !*update {
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%v (run go test -run TestGenerateTraces -update)", err)
			}
			continue
		}
		fs, err := LoadFilters(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		rules := Rules(fs)
		rng := rand.New(rand.NewPCG(2026, 4))
		var sb strings.Builder
		for i := range rules {
			for j := 0; j < 10; j++ {
				p, ok := policy.PointIn(&rules[i].Box, rng, j == 0)
				if !ok {
					continue
				}
				fmt.Fprintf(&sb, "%d\t%d\t%d\t%d\t%d\t%d\n", p.Src.Lo, p.Dst.Lo, p.SPort, p.DPort, p.Proto, match(fs, p))
			}
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTraces checks the linear scan over the mapped SPD rules against the
// traces, and the traces against the independent oracle.
func TestTraces(t *testing.T) {
	for _, name := range sets {
		fs, err := LoadFilters(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := LoadTrace(filepath.Join("testdata", name+".trace"))
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 300 || len(hs) < 2900 {
			t.Fatalf("%s: %d filters, %d headers", name, len(fs), len(hs))
		}
		rules := Rules(fs)
		for i, h := range hs {
			if m := match(fs, h.Packet); m != h.Match {
				t.Fatalf("%s header %d: oracle %d, trace %d", name, i+1, m, h.Match)
			}
			v := policy.LinearLookup(rules, &h.Packet)
			if v.Rule+1 != h.Match {
				t.Fatalf("%s header %d: linear %d, trace %d", name, i+1, v.Rule+1, h.Match)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := ParseFilters(strings.NewReader("@1.2.3.4/32 5.6.7.8/32 0 : 1 2 : 3 0x06/0xFF\nbad\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad second line: %v", err)
	}
	if _, err := ParseTrace(strings.NewReader(strings.Repeat("1", MaxLine+10))); err == nil {
		t.Error("over-long line: no error")
	}
}

func FuzzParseFilter(f *testing.F) {
	f.Add("@37.184.89.216/29\t37.184.85.16/29\t7648 : 7648\t24032 : 24032\t0x11/0xFF\t0x0000/0x0000\t")
	f.Fuzz(func(t *testing.T, line string) {
		fl, err := ParseFilter(line)
		if err != nil {
			return
		}
		r := fl.Rule(policy.ActionDrop)
		for d := range r.Box {
			if r.Box[d].Hi.Less(r.Box[d].Lo) {
				t.Fatalf("%q: empty dimension %d", line, d)
			}
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add("1600753409 3271393328 65535 21 6 413")
	f.Fuzz(func(t *testing.T, line string) {
		if h, err := ParseHeader(line); err == nil && h.Match < 1 {
			t.Fatalf("%q: match %d", line, h.Match)
		}
	})
}
