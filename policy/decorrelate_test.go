package policy

import (
	"errors"
	"testing"
)

func rule(t *testing.T, name string, prec int, src, dst string, a Action) Rule {
	t.Helper()
	b := FullBox()
	b[DimFamily] = Span(4, 4)
	var err error
	if b[DimSrc], _, err = ParseAddrRange(src); err != nil {
		t.Fatal(err)
	}
	if b[DimDst], _, err = ParseAddrRange(dst); err != nil {
		t.Fatal(err)
	}
	return Rule{Name: name, Precedence: prec, Box: b, Action: a}
}

func TestDecorrelateSmall(t *testing.T) {
	rules := []Rule{
		rule(t, "hole", 1, "192.0.2.64/26", "198.51.100.0/24", ActionDiscard),
		rule(t, "net", 2, "192.0.2.0/24", "198.51.100.0/24", ActionBypass),
		rule(t, "same", 3, "192.0.2.0/25", "198.51.100.0/24", ActionBypass),
	}
	d, err := Decorrelate(rules, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range d.Entries() {
		got[e.Rule] = append(got[e.Rule], addrRangeString(4, e.Box[DimSrc]))
	}
	// "net" minus the /26 hole is two ranges; "same" is fully shadowed.
	if len(got["hole"]) != 1 || len(got["net"]) != 2 || len(got["same"]) != 0 || d.Len() != 3 {
		t.Fatalf("entries %v", got)
	}
	// Insert past the bound fails and changes nothing.
	if _, err := Decorrelate(rules, 2); !errors.Is(err, ErrDecorrelationBound) {
		t.Errorf("bound 2: %v", err)
	}
	tight, _ := Decorrelate(rules, 3)
	extra := rule(t, "other", 0, "203.0.113.0/24", "198.51.100.0/24", ActionDiscard)
	if _, err := tight.Insert(extra); !errors.Is(err, ErrDecorrelationBound) || tight.Len() != 3 || len(tight.Rules()) != 3 {
		t.Errorf("insert past bound: %v, %d entries", err, tight.Len())
	}
	// Removing the hole gives its region back to "net" (and not to "same",
	// which "net" still shadows).
	delta, err := d.Remove("hole")
	if err != nil {
		t.Fatal(err)
	}
	if len(delta.Removed) != 1 || len(delta.Added) != 1 || delta.Added[0].Rule != "net" {
		t.Errorf("delta %+v", delta)
	}
	if _, err := d.Remove("hole"); !errors.Is(err, ErrNoRule) {
		t.Errorf("second remove: %v", err)
	}
	if _, err := d.Insert(rules[1]); !errors.Is(err, ErrBadRule) {
		t.Errorf("duplicate insert: %v", err)
	}
}

func TestShadowAndOverlap(t *testing.T) {
	rules := []Rule{
		rule(t, "a", 1, "192.0.2.0/25", "any", ActionDiscard),
		rule(t, "b", 2, "192.0.2.128/25", "any", ActionDiscard),
		rule(t, "c", 3, "192.0.2.0/24", "198.51.100.0/24", ActionBypass),
		rule(t, "d", 4, "203.0.113.0/24", "any", ActionBypass),
	}
	// c is covered only by the union of a and b: a pairwise check misses it.
	sh := FindShadowed(rules)
	if len(sh) != 1 || sh[0].Rule != 2 || len(sh[0].By) != 2 || sh[0].Redundant {
		t.Fatalf("shadowed %+v", sh)
	}
	ov := FindOverlaps(rules, 0)
	if len(ov) != 2 || CountOverlaps(rules) != 2 {
		t.Fatalf("overlaps %+v", ov)
	}
	if got := ov[0].Region.String(); got != "family=4 src=192.0.2.0/25 dst=198.51.100.0/24 proto=any sport=any dport=any" {
		t.Errorf("region %s", got)
	}
}
