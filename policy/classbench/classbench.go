// Package classbench reads ClassBench filter sets and header traces and maps
// filters onto SPD rules, so that the policy classifiers can be measured and
// checked on the standard packet-classification benchmark.
//
// A filter line is
//
//	@SRC/LEN DST/LEN SPORT_LO : SPORT_HI DPORT_LO : DPORT_HI PROTO/PMASK [FLAGS/FMASK]
//
// and the first matching filter (lowest line number) wins. A trace line is
// "SRC DST SPORT DPORT PROTO [FLAGS] MATCH" with host-order integer
// addresses and MATCH the 1-based line of the expected filter.
package classbench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/espy-dpi/espy/policy"
)

// ErrFormat marks input that is not in ClassBench format.
var ErrFormat = errors.New("classbench: bad format")

// MaxLine bounds the length of one input line.
const MaxLine = 4096

// Filter is one ClassBench filter.
type Filter struct {
	Src, Dst netip.Prefix
	SPortLo  uint16
	SPortHi  uint16
	DPortLo  uint16
	DPortHi  uint16
	Proto    uint8
	ProtoAny bool
	Line     int
}

// Rule returns the filter as an SPD rule named "r<line>" with the given
// action; the filter's line is its precedence.
func (f *Filter) Rule(action policy.Action) policy.Rule {
	b := policy.FullBox()
	b[policy.DimFamily] = policy.Span(4, 4)
	b[policy.DimSrc] = policy.PrefixInterval(f.Src)
	b[policy.DimDst] = policy.PrefixInterval(f.Dst)
	b[policy.DimSPort] = policy.Span(uint64(f.SPortLo), uint64(f.SPortHi))
	b[policy.DimDPort] = policy.Span(uint64(f.DPortLo), uint64(f.DPortHi))
	if !f.ProtoAny {
		b[policy.DimProto] = policy.Span(uint64(f.Proto), uint64(f.Proto))
	}
	r := policy.Rule{Name: "r" + strconv.Itoa(f.Line), Precedence: f.Line, Box: b, Action: action, Line: f.Line}
	if action == policy.ActionProtect {
		r.SA = r.Name
	}
	return r
}

// Rules maps filters to SPD rules. Each gets ActionProtect with an SA named
// after it, so that every rule has a distinct verdict and a lookup's answer
// identifies the rule.
func Rules(fs []Filter) []policy.Rule {
	out := make([]policy.Rule, len(fs))
	for i := range fs {
		out[i] = fs[i].Rule(policy.ActionProtect)
	}
	return out
}

// ParseFilters reads a filter set. Blank lines are skipped but counted, so
// Filter.Line is the line number in the file.
func ParseFilters(r io.Reader) ([]Filter, error) {
	var out []Filter
	err := eachLine(r, func(n int, line string) error {
		f, err := ParseFilter(line)
		if err != nil {
			return fmt.Errorf("classbench: line %d: %w", n, err)
		}
		f.Line = n
		out = append(out, f)
		return nil
	})
	return out, err
}

// ParseFilter parses one filter line.
func ParseFilter(line string) (Filter, error) {
	var f Filter
	if !strings.HasPrefix(line, "@") {
		return f, fmt.Errorf("%w: filter does not start with '@'", ErrFormat)
	}
	tok := strings.Fields(strings.ReplaceAll(line[1:], ":", " "))
	if len(tok) != 7 && len(tok) != 8 {
		return f, fmt.Errorf("%w: %d fields, want 7 or 8", ErrFormat, len(tok))
	}
	var err error
	if f.Src, err = parsePrefix(tok[0]); err != nil {
		return f, err
	}
	if f.Dst, err = parsePrefix(tok[1]); err != nil {
		return f, err
	}
	ports := [4]*uint16{&f.SPortLo, &f.SPortHi, &f.DPortLo, &f.DPortHi}
	for i, p := range ports {
		v, err := strconv.ParseUint(tok[2+i], 10, 16)
		if err != nil {
			return f, fmt.Errorf("%w: port %q", ErrFormat, tok[2+i])
		}
		*p = uint16(v)
	}
	if f.SPortLo > f.SPortHi || f.DPortLo > f.DPortHi {
		return f, fmt.Errorf("%w: empty port range", ErrFormat)
	}
	pv, pm, ok := strings.Cut(tok[6], "/")
	if !ok {
		return f, fmt.Errorf("%w: protocol %q is not value/mask", ErrFormat, tok[6])
	}
	v, err1 := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(pv), "0x"), 16, 8)
	m, err2 := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(pm), "0x"), 16, 8)
	if err1 != nil || err2 != nil {
		return f, fmt.Errorf("%w: protocol %q", ErrFormat, tok[6])
	}
	switch m {
	case 0:
		f.ProtoAny = true
	case 0xff:
		f.Proto = uint8(v)
	default:
		return f, fmt.Errorf("%w: protocol mask %#x is neither 0x00 nor 0xFF", ErrFormat, m)
	}
	// The flags column has no SPD equivalent; it is checked for shape only.
	if len(tok) == 8 && !strings.Contains(tok[7], "/") {
		return f, fmt.Errorf("%w: flags %q is not value/mask", ErrFormat, tok[7])
	}
	return f, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not an IPv4 prefix", ErrFormat, s)
	}
	// ClassBench leaves host bits set below the length.
	return p.Masked(), nil
}

// Header is one trace packet with the 1-based line of its expected filter.
type Header struct {
	Packet policy.Packet
	Match  int
}

// ParseTrace reads a header trace.
func ParseTrace(r io.Reader) ([]Header, error) {
	var out []Header
	err := eachLine(r, func(n int, line string) error {
		h, err := ParseHeader(line)
		if err != nil {
			return fmt.Errorf("classbench: trace line %d: %w", n, err)
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// ParseHeader parses one trace line.
func ParseHeader(line string) (Header, error) {
	var h Header
	tok := strings.Fields(line)
	if len(tok) != 6 && len(tok) != 7 {
		return h, fmt.Errorf("%w: %d columns, want 6 or 7", ErrFormat, len(tok))
	}
	var v [5]uint64
	bitsz := [5]int{32, 32, 16, 16, 8}
	for i := range v {
		x, err := strconv.ParseUint(tok[i], 10, bitsz[i])
		if err != nil {
			return h, fmt.Errorf("%w: column %d %q", ErrFormat, i+1, tok[i])
		}
		v[i] = x
	}
	m, err := strconv.Atoi(tok[len(tok)-1])
	if err != nil || m < 1 {
		return h, fmt.Errorf("%w: match %q is not a positive rule number", ErrFormat, tok[len(tok)-1])
	}
	h.Packet = policy.Packet{Family: 4, Src: policy.U64(v[0]), Dst: policy.U64(v[1]), SPort: uint16(v[2]), DPort: uint16(v[3]), Proto: uint8(v[4])}
	h.Match = m
	return h, nil
}

func eachLine(r io.Reader, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("classbench: line %d: %w", n+1, err)
	}
	return nil
}

// LoadFilters reads the filter file at path.
func LoadFilters(path string) ([]Filter, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("classbench: %w", err)
	}
	defer f.Close()
	fs, err := ParseFilters(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return fs, nil
}

// LoadTrace reads the trace file at path.
func LoadTrace(path string) ([]Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("classbench: %w", err)
	}
	defer f.Close()
	hs, err := ParseTrace(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hs, nil
}
