package ike

import (
	"context"
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/ike/message"
)

// ErrDefaultNarrowing is returned by a Config.NarrowTS that has no opinion
// on a proposal (espy run: no SPD rule names the tunnel any more), so the
// responder narrows to the configured LocalTS and RemoteTS instead.
var ErrDefaultNarrowing = errors.New("ike: narrow to the configured selectors")

// RekeyChildSelectors is RekeyChild proposing local (TSi) and remote (TSr)
// instead of old's selectors: the rekey that narrows a Child SA after an
// SPD change cut into its traffic (RFC 7296 1.3.3 and 2.9). The responder
// may narrow further; an answer outside local and remote is refused. The
// new Child SA's later rekeys keep the narrowed selectors.
func (sa *IKESA) RekeyChildSelectors(ctx context.Context, old *ChildSA, local, remote []message.Selector) (*ChildSA, error) {
	if len(local) == 0 || len(remote) == 0 || len(local) > 255 || len(remote) > 255 {
		return nil, fmt.Errorf("%w: rekey with %d local and %d remote selectors (1 to 255 each)", ErrConfig, len(local), len(remote))
	}
	return sa.rekeyChild(ctx, old, local, remote)
}

// withSelectors returns a copy of pol with the given selectors, so that the
// Child SA negotiated under it, and its rekeys, keep them.
func withSelectors(pol *ChildConfig, local, remote []message.Selector) *ChildConfig {
	c := *pol
	c.LocalTS, c.RemoteTS = local, remote
	return &c
}
