package ikeservice

import (
	"fmt"

	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/ikets"
)

// spdNarrower returns the responder's narrowing through the SPD for the
// tunnel named name (RFC 7296 2.9, policy/ikets.Narrow), or nil when no
// PROTECT rule names the tunnel: then the tunnel's own local_ts and
// remote_ts decide. A proposal whose traffic the SPD protects with another
// tunnel, or does not protect, is TS_UNACCEPTABLE.
func spdNarrower(pol *policy.Policy, name string) func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
	if pol == nil {
		return nil
	}
	used := false
	for _, r := range pol.Rules {
		used = used || (r.Action == policy.ActionProtect && r.SA == name)
	}
	if !used {
		return nil
	}
	return func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		res, err := ikets.Narrow(pol.Rules, pol.LabelID, toIkets(tsi), toIkets(tsr))
		if err != nil {
			return nil, nil, fmt.Errorf("ikeservice: tunnel %s: %w", name, err)
		}
		if res.SA != name {
			return nil, nil, fmt.Errorf("ikeservice: tunnel %s: the SPD protects this traffic with %q (rule %s): %w", name, res.SA, res.Rule, ikets.ErrUnacceptable)
		}
		return fromIkets(res.TSi), fromIkets(res.TSr), nil
	}
}

func toIkets(ss []message.Selector) ikets.Selectors {
	var out ikets.Selectors
	for _, s := range ss {
		out.TS = append(out.TS, ikets.TS{Type: ikets.Type(s.TSType), Protocol: s.IPProto,
			StartPort: s.StartPort, EndPort: s.EndPort, Start: s.StartAddr, End: s.EndAddr})
	}
	return out
}

func fromIkets(s ikets.Selectors) []message.Selector {
	var out []message.Selector
	for _, t := range s.TS {
		out = append(out, message.Selector{TSType: message.TSType(t.Type), IPProto: t.Protocol,
			StartPort: t.StartPort, EndPort: t.EndPort, StartAddr: t.Start, EndAddr: t.End})
	}
	return out
}
