package ikets

import (
	"fmt"

	"github.com/espy-dpi/espy/policy"
)

// Rule turns negotiated selectors into the SPD rule the IKE stack installs
// for a CHILD_SA (one TS on each side, as Narrow returns), protecting with
// sa at the given precedence. Insert it with classify.Set.Insert or
// policy.Decorrelated.Insert; remove it by name when the SA goes away.
func Rule(name string, precedence int, labels func(string) (uint32, bool), tsi, tsr Selectors, sa string) (policy.Rule, error) {
	if err := validate(tsi, tsr); err != nil {
		return policy.Rule{}, err
	}
	if len(tsi.TS) != 1 || len(tsr.TS) != 1 {
		return policy.Rule{}, fmt.Errorf("%w: want one selector per side, got %d and %d", ErrBadTS, len(tsi.TS), len(tsr.TS))
	}
	if tsi.Label != tsr.Label {
		return policy.Rule{}, fmt.Errorf("%w: TSi label %q and TSr label %q differ", ErrBadTS, tsi.Label, tsr.Label)
	}
	var id uint32
	if tsi.Label != "" {
		var ok bool
		if id, ok = labels(tsi.Label); !ok {
			return policy.Rule{}, fmt.Errorf("%w: security label %q is in no policy", ErrBadTS, tsi.Label)
		}
	}
	b, ok := pairBox(tsr.TS[0], tsi.TS[0], id, tsi.Label != "")
	if !ok {
		return policy.Rule{}, fmt.Errorf("%w: TSi %v and TSr %v have different families or protocols", ErrBadTS, tsi.TS[0], tsr.TS[0])
	}
	return policy.Rule{Name: name, Precedence: precedence, Box: b, Action: policy.ActionProtect, SA: sa}, nil
}
