package ike

import (
	"errors"

	"github.com/espy-dpi/espy/ike/message"
)

// Accessors and hooks for a supervisor (espy run's IKE service) that lists,
// watches and deletes IKE SAs and narrows traffic selectors through its SPD.
// They live apart from sa.go so that the state machine stays free of
// control-plane concerns.

// Done returns a channel that is closed when the IKE SA is gone: deleted by
// either side, timed out by DPD, replaced after INITIAL_CONTACT, or closed
// with its endpoint. A rekeyed IKE SA stays the same *IKESA and is not done.
func (sa *IKESA) Done() <-chan struct{} { return sa.dead }

// Initiator reports whether this host is the IKE SA's original initiator
// (after an IKE SA rekey: the initiator of the rekey).
func (sa *IKESA) Initiator() bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.initiator
}

// CheckProposal applies the checks Initiate and Respond make to a proposal
// (for an IKE SA when ikeSA is true, else for a Child SA), so that a
// configuration file can be rejected when it is loaded rather than when
// the first exchange starts.
func CheckProposal(p Proposal, ikeSA, allowWeak bool) error {
	return p.validate(ikeSA, allowWeak)
}

// narrowTSLocked is the responder's answer to a Child SA's TSi and TSr:
// Config.NarrowTS when set, else the intersection with the Child SA
// policy's remote and local selectors. Empty lists mean TS_UNACCEPTABLE.
// Call with sa.mu held.
func (sa *IKESA) narrowTSLocked(local, remote, tsi, tsr []message.Selector) (nsi, nsr []message.Selector) {
	c := sa.cfg
	if c.NarrowTS == nil {
		return narrow(tsi, selectorsOr(remote, sa.remote.Addr())), narrow(tsr, selectorsOr(local, sa.local.Addr()))
	}
	nsi, nsr, err := c.NarrowTS(tsi, tsr)
	if errors.Is(err, ErrDefaultNarrowing) {
		return narrow(tsi, selectorsOr(remote, sa.remote.Addr())), narrow(tsr, selectorsOr(local, sa.local.Addr()))
	}
	if err != nil {
		sa.log.Info("ike: traffic selectors refused", "err", err)
		return nil, nil
	}
	return nsi, nsr
}
