package store

import "github.com/nats-io/nats-server/v2/server"

// SubjectInterest returns a function that reports whether any
// subscription has interest in a subject, as the embedded nats-server
// decides where a message published on the store's connection goes:
// the sublist of its account (the global account: the in-process
// connection has no user), which holds local subscriptions and those
// of routes and leaf nodes. A subscription counts once the server has
// processed its SUB (the subscriber's Flush returned). It returns nil
// with an external NATS, where only that server knows.
//
// The check takes the account's and the sublist's read locks and is a
// lookup in the sublist's result cache when the server matched the
// subject before (a message published on it: about 24 ns), else a walk
// down the subject's four tokens in the sublist's tree (about 75 ns),
// never a scan of the subscriptions; it allocates nothing
// (BenchmarkSubjectInterest). While nobody subscribes no message is
// published, so the walk is the usual case; the cache (1,024 subjects,
// swept at random) also churns with the history's subjects, one per
// call.
func (s *Store) SubjectInterest() func(subject string) bool {
	if s.srv == nil {
		return nil
	}
	return Interest(s.srv)
}

// Interest is SubjectInterest for srv's global account, or nil when the
// sublist is not the whole answer: with gateways (a super-cluster), a
// message goes to remote clusters in optimistic mode without any
// subscription known here. The subject is taken as published: the
// account has no subject mappings (callgate's embedded server sets none).
func Interest(srv *server.Server) func(subject string) bool {
	if srv == nil || srv.GatewayAddr() != nil {
		return nil
	}
	return srv.GlobalAccount().SubscriptionInterest
}
