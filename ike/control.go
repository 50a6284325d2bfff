package ike

// Accessors for a supervisor (espy run's IKE service) that lists, watches
// and deletes IKE SAs. They live apart from sa.go so that the state machine
// stays free of control-plane concerns.

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
