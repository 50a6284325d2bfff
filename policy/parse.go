package policy

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration files LoadFile reads.
const MaxFileSize = 64 << 20

// LoadFile reads and parses the policy section of the YAML file at path.
func LoadFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &ParseError{File: path, Err: fmt.Errorf("%w: file larger than %d bytes", ErrSyntax, MaxFileSize)}
	}
	return Parse(path, data)
}

// Parse parses the top-level "policy:" mapping of a YAML configuration; the
// other top-level keys belong to other parts of espy and are ignored. file
// names the input in errors. In forbid mode a policy with overlapping rules
// is rejected with an error wrapping ErrOverlap.
func Parse(file string, data []byte) (*Policy, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &ParseError{File: file, Line: yamlErrLine(err), Err: fmt.Errorf("%w: %v", ErrSyntax, err)}
	}
	perr := func(n *yaml.Node, rule string, err error) error {
		line := 0
		if n != nil {
			line = n.Line
		}
		return &ParseError{File: file, Line: line, Rule: rule, Err: err}
	}
	if doc.Kind == 0 {
		return nil, perr(nil, "", fmt.Errorf("%w: empty document", ErrSyntax))
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, perr(root, "", fmt.Errorf("%w: top level is not a mapping", ErrSyntax))
	}
	sec := mapGet(root, "policy")
	if sec == nil {
		return nil, perr(root, "", fmt.Errorf("%w: no top-level \"policy:\" section", ErrSyntax))
	}
	if a := findAlias(sec); a != nil {
		return nil, perr(a, "", fmt.Errorf("%w: YAML aliases are not allowed in policy", ErrSyntax))
	}
	if sec.Kind != yaml.MappingNode {
		return nil, perr(sec, "", fmt.Errorf("%w: \"policy\" is not a mapping", ErrSyntax))
	}
	p := &Policy{Mode: ModeOrdered, MaxEntries: DefaultMaxEntries}
	var rulesNode *yaml.Node
	for i := 0; i+1 < len(sec.Content); i += 2 {
		k, v := sec.Content[i], sec.Content[i+1]
		switch k.Value {
		case "mode":
			m, err := ParseMode(v.Value)
			if err != nil {
				return nil, perr(v, "", err)
			}
			p.Mode = m
		case "max_entries":
			n, err := strconv.Atoi(v.Value)
			if err != nil || n <= 0 {
				return nil, perr(v, "", fmt.Errorf("%w: max_entries %q is not a positive integer", ErrSyntax, v.Value))
			}
			p.MaxEntries = n
		case "rules":
			rulesNode = v
		default:
			return nil, perr(k, "", fmt.Errorf("%w: unknown key %q in policy (want mode, max_entries, rules)", ErrSyntax, k.Value))
		}
	}
	if rulesNode == nil || rulesNode.Kind != yaml.SequenceNode {
		return nil, perr(sec, "", fmt.Errorf("%w: policy needs a \"rules:\" list", ErrSyntax))
	}
	names := map[string]int{}
	labels := map[string]uint32{}
	withPrec := 0
	precLine := map[int]int{}
	for i, rn := range rulesNode.Content {
		r, hasPrec, err := parseRule(rn, i, labels, &p.Labels)
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				pe.File = file
				return nil, pe
			}
			return nil, perr(rn, r.Name, err)
		}
		if prev, dup := names[r.Name]; dup {
			return nil, perr(rn, r.Name, fmt.Errorf("%w: name already used by the rule on line %d", ErrBadRule, prev))
		}
		names[r.Name] = rn.Line
		if hasPrec {
			withPrec++
			if prev, dup := precLine[r.Precedence]; dup {
				return nil, perr(rn, r.Name, fmt.Errorf("%w: precedence %d already used by the rule on line %d", ErrBadRule, r.Precedence, prev))
			}
			precLine[r.Precedence] = rn.Line
		} else {
			r.Precedence = i
		}
		p.Rules = append(p.Rules, r)
	}
	if withPrec != 0 && withPrec != len(p.Rules) {
		return nil, perr(rulesNode, "", fmt.Errorf("%w: either every rule has a precedence or none does (%d of %d have one)", ErrBadRule, withPrec, len(p.Rules)))
	}
	sortRules(p.Rules)
	if p.Mode == ModeForbid {
		if ov := FindOverlaps(p.Rules, 1); len(ov) > 0 {
			o := ov[0]
			a, b := &p.Rules[o.A], &p.Rules[o.B]
			return nil, &ParseError{File: file, Line: b.Line, Rule: b.Name,
				Err: fmt.Errorf("%w: mode forbid, but rule %q (line %d) and rule %q (line %d) overlap in %s", ErrOverlap, a.Name, a.Line, b.Name, b.Line, o.Region)}
		}
	}
	return p, nil
}

func yamlErrLine(err error) int {
	// yaml.v3 reports "yaml: line N: ..." for syntax errors.
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(s[i+5 : j])
		return n
	}
	return 0
}

// findAlias returns the first YAML alias inside the policy section: aliases
// have no use in a rule list and are the vehicle of expansion bombs.
func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// ruleFields holds the raw selector fields of one rule, with their nodes.
type ruleFields struct {
	src, dst, proto, sport, dport, icmpType, icmpCode *yaml.Node
}

func parseRule(rn *yaml.Node, idx int, labels map[string]uint32, labelList *[]string) (Rule, bool, error) {
	r := Rule{Line: rn.Line, Box: FullBox()}
	if rn.Kind != yaml.MappingNode {
		return r, false, fmt.Errorf("%w: rule %d is not a mapping", ErrSyntax, idx+1)
	}
	fail := func(n *yaml.Node, err error) (Rule, bool, error) {
		return r, false, &ParseError{Line: n.Line, Rule: r.Name, Err: err}
	}
	if n := mapGet(rn, "name"); n != nil {
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			return fail(n, fmt.Errorf("%w: name must be a non-empty string", ErrBadRule))
		}
		r.Name = n.Value
	} else {
		return fail(rn, fmt.Errorf("%w: rule %d has no name", ErrBadRule, idx+1))
	}
	var f ruleFields
	var hasPrec, hasAction bool
	var labelNode, saNode *yaml.Node
	for i := 0; i+1 < len(rn.Content); i += 2 {
		k, v := rn.Content[i], rn.Content[i+1]
		if k.Value != "icmp" && v.Kind != yaml.ScalarNode {
			return fail(v, fmt.Errorf("%w: %s must be a scalar", ErrSyntax, k.Value))
		}
		switch k.Value {
		case "name":
		case "precedence":
			n, err := strconv.Atoi(v.Value)
			if err != nil || n < 0 || n > math.MaxInt32 {
				return fail(v, fmt.Errorf("%w: precedence %q is not an integer in 0..%d", ErrBadRule, v.Value, math.MaxInt32))
			}
			r.Precedence, hasPrec = n, true
		case "src":
			f.src = v
		case "dst":
			f.dst = v
		case "protocol":
			f.proto = v
		case "src_port":
			f.sport = v
		case "dst_port":
			f.dport = v
		case "icmp":
			if v.Kind != yaml.MappingNode {
				return fail(v, fmt.Errorf("%w: icmp must be a mapping with type and code", ErrSyntax))
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				ik, iv := v.Content[j], v.Content[j+1]
				switch ik.Value {
				case "type":
					f.icmpType = iv
				case "code":
					f.icmpCode = iv
				default:
					return fail(ik, fmt.Errorf("%w: unknown key %q in icmp (want type, code)", ErrSyntax, ik.Value))
				}
			}
		case "label":
			labelNode = v
		case "action":
			a, err := ParseAction(v.Value)
			if err != nil {
				return fail(v, err)
			}
			r.Action, hasAction = a, true
		case "sa":
			saNode = v
		default:
			return fail(k, fmt.Errorf("%w: unknown key %q in rule (want name, precedence, src, dst, protocol, src_port, dst_port, icmp, label, action, sa)", ErrSyntax, k.Value))
		}
	}
	if !hasAction {
		return fail(rn, fmt.Errorf("%w: no action", ErrBadRule))
	}
	if saNode != nil {
		if r.Action != ActionProtect {
			return fail(saNode, fmt.Errorf("%w: sa is only meaningful with action protect", ErrBadRule))
		}
		if saNode.Value == "" {
			return fail(saNode, fmt.Errorf("%w: sa is empty", ErrBadRule))
		}
		r.SA = saNode.Value
	} else if r.Action == ActionProtect {
		return fail(rn, fmt.Errorf("%w: action protect needs an sa (tunnel or SA name)", ErrBadRule))
	}
	if err := f.apply(&r.Box); err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.Rule = r.Name
		}
		return r, false, err
	}
	if labelNode != nil {
		l := labelNode.Value
		switch {
		case l == "":
			return fail(labelNode, fmt.Errorf("%w: empty security label", ErrBadSelector))
		case len(l) > MaxLabelLen:
			return fail(labelNode, fmt.Errorf("%w: %d octets, at most %d", ErrLabelTooLong, len(l), MaxLabelLen))
		}
		id, ok := labels[l]
		if !ok {
			*labelList = append(*labelList, l)
			id = uint32(len(*labelList))
			labels[l] = id
		}
		r.Box[DimLabel] = Span(uint64(id), uint64(id))
	}
	return r, hasPrec, nil
}

// apply narrows b by the parsed selector fields.
func (f *ruleFields) apply(b *Box) error {
	fail := func(n *yaml.Node, err error) error { return &ParseError{Line: n.Line, Err: err} }
	fam := uint8(0)
	setFam := func(n *yaml.Node, v uint8) error {
		if v == 0 {
			return nil
		}
		if fam != 0 && fam != v {
			return fail(n, fmt.Errorf("%w: mixes IPv4 and IPv6", ErrBadSelector))
		}
		fam = v
		return nil
	}
	if f.src != nil {
		iv, v, err := ParseAddrRange(f.src.Value)
		if err != nil {
			return fail(f.src, fmt.Errorf("src: %w", err))
		}
		if err := setFam(f.src, v); err != nil {
			return err
		}
		b[DimSrc] = iv
	}
	if f.dst != nil {
		iv, v, err := ParseAddrRange(f.dst.Value)
		if err != nil {
			return fail(f.dst, fmt.Errorf("dst: %w", err))
		}
		if err := setFam(f.dst, v); err != nil {
			return err
		}
		b[DimDst] = iv
	}
	proto := -1
	if f.proto != nil {
		p, err := ParseProtocol(f.proto.Value)
		if err != nil {
			return fail(f.proto, err)
		}
		proto = p
		if proto >= 0 {
			b[DimProto] = Span(uint64(proto), uint64(proto))
		}
	}
	if proto == ProtoICMP {
		if err := setFam(f.proto, 4); err != nil {
			return fail(f.proto, fmt.Errorf("%w: protocol icmp with IPv6 addresses (use ipv6-icmp)", ErrBadSelector))
		}
	}
	if proto == ProtoICMPv6 {
		if err := setFam(f.proto, 6); err != nil {
			return fail(f.proto, fmt.Errorf("%w: protocol ipv6-icmp with IPv4 addresses (use icmp)", ErrBadSelector))
		}
	}
	for _, n := range []*yaml.Node{f.sport, f.dport} {
		if n != nil && !hasPorts(proto) {
			return fail(n, fmt.Errorf("%w: ports need protocol tcp, udp, sctp or udplite", ErrBadSelector))
		}
	}
	if f.sport != nil {
		iv, err := parseSmallRange(f.sport.Value, 65535)
		if err != nil {
			return fail(f.sport, fmt.Errorf("src_port: %w", err))
		}
		b[DimSPort] = iv
	}
	if f.dport != nil {
		iv, err := parseSmallRange(f.dport.Value, 65535)
		if err != nil {
			return fail(f.dport, fmt.Errorf("dst_port: %w", err))
		}
		b[DimDPort] = iv
	}
	if f.icmpType != nil || f.icmpCode != nil {
		n := f.icmpType
		if n == nil {
			n = f.icmpCode
		}
		if proto != ProtoICMP && proto != ProtoICMPv6 {
			return fail(n, fmt.Errorf("%w: icmp type/code needs protocol icmp or ipv6-icmp", ErrBadSelector))
		}
		t, c := Span(0, 255), Span(0, 255)
		var err error
		if f.icmpType != nil {
			if t, err = parseSmallRange(f.icmpType.Value, 255); err != nil {
				return fail(f.icmpType, fmt.Errorf("icmp type: %w", err))
			}
		}
		if f.icmpCode != nil {
			if c, err = parseSmallRange(f.icmpCode.Value, 255); err != nil {
				return fail(f.icmpCode, fmt.Errorf("icmp code: %w", err))
			}
		}
		iv, err := ICMPRange(t, c)
		if err != nil {
			return fail(n, err)
		}
		b[DimSPort] = iv
		b[DimDPort] = Span(0, 0)
	}
	switch fam {
	case 4:
		b[DimFamily] = Span(4, 4)
		// An IPv4 "any" address is the 32-bit space.
		for _, d := range []int{DimSrc, DimDst} {
			if b[d].Hi == MaxU128 {
				b[d].Hi = lowOnes(32)
			}
		}
	case 6:
		b[DimFamily] = Span(6, 6)
	}
	return nil
}

// ICMPRange encodes an ICMP type range and code range as one interval of the
// source-port dimension (type<<8|code). A code restriction needs a single
// type, since otherwise the set is not an interval.
func ICMPRange(typ, code Interval) (Interval, error) {
	if typ.Lo != typ.Hi && code != Span(0, 255) {
		return Interval{}, fmt.Errorf("%w: an icmp code restriction needs a single icmp type", ErrBadSelector)
	}
	return Span(typ.Lo.Lo<<8|code.Lo.Lo, typ.Hi.Lo<<8|code.Hi.Lo), nil
}

// IP protocol numbers espy names.
const (
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	ProtoGRE     = 47
	ProtoESP     = 50
	ProtoAH      = 51
	ProtoICMPv6  = 58
	ProtoSCTP    = 132
	ProtoUDPLite = 136
)

var protoNames = map[string]int{
	"any": -1, "icmp": ProtoICMP, "tcp": ProtoTCP, "udp": ProtoUDP, "gre": ProtoGRE,
	"esp": ProtoESP, "ah": ProtoAH, "ipv6-icmp": ProtoICMPv6, "icmpv6": ProtoICMPv6,
	"sctp": ProtoSCTP, "udplite": ProtoUDPLite,
}

// ParseProtocol parses a protocol name or number 1..255; "any" gives -1.
func ParseProtocol(s string) (int, error) {
	if p, ok := protoNames[strings.ToLower(s)]; ok {
		return p, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrUnknownProtocol, s)
	}
	if n < 1 || n > 255 {
		return 0, fmt.Errorf("%w: protocol number %d out of 1..255 (use any for all)", ErrBadSelector, n)
	}
	return n, nil
}

func hasPorts(proto int) bool {
	return proto == ProtoTCP || proto == ProtoUDP || proto == ProtoSCTP || proto == ProtoUDPLite
}

// parseSmallRange parses "any", "N" or "LO-HI" with values in 0..max.
func parseSmallRange(s string, max uint64) (Interval, error) {
	s = strings.TrimSpace(s)
	if s == "any" {
		return Span(0, max), nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
	if err != nil {
		return Interval{}, fmt.Errorf("%w: %q is not a number, range or any", ErrBadSelector, s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 64); err != nil {
			return Interval{}, fmt.Errorf("%w: %q is not a number, range or any", ErrBadSelector, s)
		}
	}
	if a > max || b > max {
		return Interval{}, fmt.Errorf("%w: %q exceeds %d", ErrBadSelector, s, max)
	}
	if a > b {
		return Interval{}, fmt.Errorf("%w: range %q is empty (start above end)", ErrBadSelector, s)
	}
	return Span(a, b), nil
}

// ParseAddrRange parses "any", an address, a prefix "A/N" (host bits must be
// zero) or a range "A-B" of one family. The family is 0 for any.
func ParseAddrRange(s string) (Interval, uint8, error) {
	s = strings.TrimSpace(s)
	if s == "any" {
		return Interval{U128{}, MaxU128}, 0, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return Interval{}, 0, fmt.Errorf("%w: %v", ErrBadSelector, err)
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return Interval{}, 0, fmt.Errorf("%w: %v", ErrBadSelector, err)
		}
		if a.Zone() != "" || b.Zone() != "" {
			return Interval{}, 0, fmt.Errorf("%w: %q: zones are not allowed", ErrBadSelector, s)
		}
		a, b = a.Unmap(), b.Unmap()
		if a.Is4() != b.Is4() {
			return Interval{}, 0, fmt.Errorf("%w: range %q mixes IPv4 and IPv6", ErrBadSelector, s)
		}
		if b.Less(a) {
			return Interval{}, 0, fmt.Errorf("%w: range %q is empty (start above end)", ErrBadSelector, s)
		}
		return Interval{AddrU128(a), AddrU128(b)}, family(a), nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return Interval{}, 0, fmt.Errorf("%w: %v", ErrBadSelector, err)
		}
		if p.Masked() != p {
			return Interval{}, 0, fmt.Errorf("%w: prefix %q has host bits set (did you mean %s?)", ErrBadSelector, s, p.Masked())
		}
		return PrefixInterval(p), family(p.Addr()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Interval{}, 0, fmt.Errorf("%w: %v", ErrBadSelector, err)
	}
	if a.Zone() != "" {
		return Interval{}, 0, fmt.Errorf("%w: %q: zones are not allowed", ErrBadSelector, s)
	}
	a = a.Unmap()
	v := AddrU128(a)
	return Interval{v, v}, family(a), nil
}

// PrefixInterval returns the addresses of p as an interval.
func PrefixInterval(p netip.Prefix) Interval {
	p = p.Masked()
	width := 128
	if p.Addr().Is4() {
		width = 32
	}
	lo := AddrU128(p.Addr())
	return Interval{lo, lo.Or(lowOnes(width - p.Bits()))}
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}
