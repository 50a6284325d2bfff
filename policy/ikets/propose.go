package ikets

import (
	"fmt"
	"net/netip"

	"github.com/espy-dpi/espy/policy"
)

// AnyTS returns the selectors of every address, protocol and port of both
// families, the proposal of a side that configures no selectors.
func AnyTS() Selectors {
	return Selectors{TS: []TS{
		{Type: IPv4AddrRange, EndPort: 65535, Start: netip.IPv4Unspecified(), End: netip.AddrFrom4([4]byte{255, 255, 255, 255})},
		{Type: IPv6AddrRange, EndPort: 65535, Start: netip.IPv6Unspecified(), End: netip.AddrFrom16([16]byte{0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 255, 8: 255, 9: 255, 10: 255, 11: 255, 12: 255, 13: 255, 14: 255, 15: 255})},
	}}
}

// Propose is the initiator's proposal for a CHILD_SA of sa: the part of
// local × remote (this host's side and the peer's; AnyTS when nothing is
// configured) that the ordered SPD routes to sa with a PROTECT rule under
// first-match semantics. Of several such parts the largest is proposed, so
// that the SA never carries traffic the SPD gives another rule. The result
// has TSi as the local side and TSr as the remote side, the initiator's
// view (RFC 7296 section 2.9). Propose never uses a triggering packet:
// espy's SAs are not started by traffic. ErrUnacceptable is returned when
// the SPD routes none of it to sa.
func Propose(rules []policy.Rule, labels func(string) (uint32, bool), local, remote Selectors, sa string) (Result, error) {
	if err := validate(local, remote); err != nil {
		return Result{}, err
	}
	labelID, labelled := uint32(0), local.Label != ""
	if labelled {
		if local.Label != remote.Label {
			return Result{}, fmt.Errorf("%w: local label %q and remote label %q differ", ErrBadTS, local.Label, remote.Label)
		}
		id, ok := labels(local.Label)
		if !ok {
			return Result{}, fmt.Errorf("%w: security label %q is in no policy", ErrUnacceptable, local.Label)
		}
		labelID = id
	}
	var (
		best    policy.Box
		bestVol = -1.0
		rule    string
		whole   = 0
		pieces  = 0
	)
	for _, l := range local.TS {
		for _, r := range remote.TS {
			b, ok := pairBox(l, r, labelID, labelled)
			if !ok {
				continue
			}
			whole++
			rs, err := regions(rules, b)
			if err != nil {
				return Result{}, fmt.Errorf("ikets: propose: %w", err)
			}
			for _, rg := range rs {
				ru := &rules[rg.rule]
				if ru.Action != policy.ActionProtect || ru.SA != sa {
					continue
				}
				pieces++
				if _, _, ok := boxTS(rg.box, 0); !ok {
					continue
				}
				if v := rg.box.Log2Volume(); v > bestVol {
					best, bestVol, rule = rg.box, v, ru.Name
				}
			}
		}
	}
	if bestVol < 0 {
		return Result{}, fmt.Errorf("%w: the SPD routes none of the configured selectors to %q", ErrUnacceptable, sa)
	}
	l, r, _ := boxTS(best, 0)
	res := Result{
		TSi:  Selectors{TS: []TS{l}, Label: local.Label},
		TSr:  Selectors{TS: []TS{r}, Label: remote.Label},
		Rule: rule, SA: sa,
	}
	res.Narrowed = !(whole == 1 && pieces == 1 && len(local.TS) == 1 && len(remote.TS) == 1 && l == local.TS[0] && r == remote.TS[0])
	return res, nil
}
