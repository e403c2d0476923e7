package e2e

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// This file checks that what clients see of a cluster is linearizable
// while its membership changes under them. A workload of puts, gets and
// compare-and-set txns is recorded with call and return times, and
// porcupine searches for one order of all the operations that respects
// real time and a sequential model of etcd's key-value store. Tests that
// replace, add or restart members run a workload across the change and
// call w.check(t) at the end.

// workloadOptions configures startWorkload; zero fields take defaults.
type workloadOptions struct {
	clients int    // concurrent workers; default 4
	keys    int    // keys written and read; default 8
	prefix  string // under which the keys live; default a fresh "/linz/<n>/"
	// maxOps bounds the ops of all workers together: they stop by
	// themselves once it is reached. Default 20000.
	maxOps       int
	opTimeout    time.Duration // each op's deadline; default 5s
	checkTimeout time.Duration // porcupine's search; default 1m
}

// workloadResult tallies a workload once it has stopped.
type workloadResult struct {
	ok     kvOpCounts // answered without error
	failed kvOpCounts // errors, not counting ops cut short by stop
	// txnCompareFailed is how many of ok.txn were answered but found the
	// key at another revision than the worker expected.
	txnCompareFailed int
	// unknown is how many writes are in the history with an unknown
	// outcome: the failed ones and those cut short by stop.
	unknown  int
	firstErr error // one of the errors counted in failed, for the log
	// longestWriteGap is the longest stretch, from the start until the
	// workers finished, in which no write request (put, or txn whichever
	// way its compare went: both go through raft) was acknowledged. It is
	// the unavailability a client saw; a report figure, not an assertion.
	longestWriteGap time.Duration
}

type kvOpCounts struct{ get, put, txn int }

func (c kvOpCounts) total() int { return c.get + c.put + c.txn }

func (c *kvOpCounts) add(kind kvOpKind) {
	switch kind {
	case kvGet:
		c.get++
	case kvPut:
		c.put++
	case kvTxn:
		c.txn++
	}
}

// workload is concurrent clients doing random ops on a few keys and
// recording each op for the linearizability check.
type workload struct {
	t    *testing.T
	cli  *clientv3.Client
	o    workloadOptions
	keys []string

	ctx     context.Context // cancelled by stop
	cancel  context.CancelFunc
	start   time.Time // op times are nanoseconds since start
	issued  atomic.Int64
	acked   atomic.Int64
	workers []*loadWorker
	done    chan struct{} // closed once every worker has returned
	end     int64         // when they had, set before done is closed

	stopOnce  sync.Once
	res       workloadResult
	ops       []porcupine.Operation // set by stop, final reads appended by check
	finalRead bool
}

// loadWorker is one client of the workload. It records only into itself,
// so workers need no locks; stop merges them after they have returned.
type loadWorker struct {
	w       *workload
	id      int
	lastRev map[string]int64 // per key, the mod revision this worker last saw
	ops     []porcupine.Operation
	acks    []int64 // return times of acknowledged writes
	res     workloadResult
}

// workloadSeq numbers default prefixes, so workloads never share keys.
var workloadSeq atomic.Int64

// startWorkload starts o.clients workers on cli. They stop by themselves
// after o.maxOps ops; stop ends them sooner, and runs at cleanup.
func startWorkload(t *testing.T, cli *clientv3.Client, o workloadOptions) *workload {
	t.Helper()
	o.clients = cmp.Or(o.clients, 4)
	o.keys = cmp.Or(o.keys, 8)
	o.maxOps = cmp.Or(o.maxOps, 20000)
	o.opTimeout = cmp.Or(o.opTimeout, 5*time.Second)
	o.checkTimeout = cmp.Or(o.checkTimeout, time.Minute)
	if o.prefix == "" {
		o.prefix = fmt.Sprintf("/linz/%d/", workloadSeq.Add(1))
	}
	w := &workload{t: t, cli: cli, o: o, done: make(chan struct{})}
	for i := range o.keys {
		w.keys = append(w.keys, fmt.Sprintf("%sk%d", o.prefix, i))
	}

	// The model starts every key absent, so they must be.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	resp, err := cli.Get(ctx, o.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		t.Fatalf("workload: count keys under %s: %v", o.prefix, err)
	}
	if resp.Count != 0 {
		t.Fatalf("workload: %s already holds %d keys; the model needs them absent", o.prefix, resp.Count)
	}

	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.start = time.Now()
	var wg sync.WaitGroup
	for i := range o.clients {
		wk := &loadWorker{w: w, id: i, lastRev: map[string]int64{}}
		w.workers = append(w.workers, wk)
		wg.Go(wk.run)
	}
	go func() {
		wg.Wait()
		w.end = w.now()
		close(w.done)
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// now is the time since the workload started, on the monotonic clock.
func (w *workload) now() int64 { return time.Since(w.start).Nanoseconds() }

// writesAcked is how many writes have been acknowledged so far: for a
// test to wait until the load is flowing before it changes the cluster.
func (w *workload) writesAcked() int { return int(w.acked.Load()) }

// wait waits until the workers have done o.maxOps ops, then stops.
func (w *workload) wait() workloadResult {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(waitLimit):
		w.t.Fatalf("workload: %d ops not done within %s", w.o.maxOps, waitLimit)
	}
	return w.stop()
}

// stop cancels the workers, waits for them, and returns the tally. Ops
// in flight end with context canceled; their writes stay in the history
// as unknown, since the cluster may still apply them.
func (w *workload) stop() workloadResult {
	w.stopOnce.Do(func() {
		w.cancel()
		<-w.done
		var acks []int64
		for _, wk := range w.workers {
			w.ops = append(w.ops, wk.ops...)
			acks = append(acks, wk.acks...)
			r := wk.res
			w.res.ok.get += r.ok.get
			w.res.ok.put += r.ok.put
			w.res.ok.txn += r.ok.txn
			w.res.failed.get += r.failed.get
			w.res.failed.put += r.failed.put
			w.res.failed.txn += r.failed.txn
			w.res.txnCompareFailed += r.txnCompareFailed
			w.res.unknown += r.unknown
			if w.res.firstErr == nil {
				w.res.firstErr = r.firstErr
			}
		}
		slices.Sort(acks)
		prev := int64(0)
		for _, a := range append(acks, w.end) {
			w.res.longestWriteGap = max(w.res.longestWriteGap, time.Duration(a-prev))
			prev = a
		}
	})
	return w.res
}

// history is every op recorded so far, with the final reads once check
// has run. It stops the workload first.
func (w *workload) history() []porcupine.Operation {
	w.stop()
	return slices.Clone(w.ops)
}

// check stops the workload, reads every key once more, and fails the test
// unless the whole history is linearizable.
//
// The final reads are what make "no acknowledged write was lost" part of
// the porcupine check: each starts after every acknowledged write has
// returned, so the model lets it see only the key's last acknowledged
// write, or a later or unknown-outcome one.
func (w *workload) check(t *testing.T) {
	t.Helper()
	w.stop()
	if !w.finalRead {
		w.finalRead = true
		for _, key := range w.keys {
			w.ops = append(w.ops, w.readFinal(t, key))
		}
	}
	checkLinearizable(t, w.history(), w.o.checkTimeout)
}

// readFinal reads key linearizably, retrying until waitLimit: a failed
// read changed nothing, so only the one that succeeds is recorded.
func (w *workload) readFinal(t *testing.T, key string) porcupine.Operation {
	t.Helper()
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), w.o.opTimeout)
		call := w.now()
		resp, err := w.cli.Get(ctx, key)
		ret := w.now()
		cancel()
		if err == nil {
			// One client id past the workers', for the visualization.
			return recordedOp(w.o.clients, call, ret, kvInput{kind: kvGet, key: key}, getOutput(resp))
		}
		if time.Now().After(deadline) {
			t.Fatalf("final read of %s: %v", key, err)
		}
	}
}

func (wk *loadWorker) run() {
	w := wk.w
	for n := 0; w.ctx.Err() == nil && w.issued.Add(1) <= int64(w.o.maxOps); n++ {
		key := w.keys[rand.IntN(len(w.keys))]
		ctx, cancel := context.WithTimeout(w.ctx, w.o.opTimeout)
		switch rand.IntN(3) {
		case 0:
			wk.get(ctx, key)
		case 1:
			wk.put(ctx, key, fmt.Sprintf("c%d-%d", wk.id, n))
		default:
			wk.txn(ctx, key, fmt.Sprintf("c%d-%d", wk.id, n))
		}
		cancel()
	}
}

func (wk *loadWorker) get(ctx context.Context, key string) {
	in := kvInput{kind: kvGet, key: key}
	call := wk.w.now()
	resp, err := wk.w.cli.Get(ctx, key)
	ret := wk.w.now()
	if err != nil {
		// A failed read had no effect: it is left out of the history.
		wk.failed(kvGet, fmt.Errorf("get %s: %w", key, err))
		return
	}
	out := getOutput(resp)
	wk.lastRev[key] = out.modRev
	wk.record(call, ret, in, out)
}

func (wk *loadWorker) put(ctx context.Context, key, value string) {
	in := kvInput{kind: kvPut, key: key, value: value}
	call := wk.w.now()
	resp, err := wk.w.cli.Put(ctx, key, value)
	ret := wk.w.now()
	if err != nil {
		wk.unknown(call, in, fmt.Errorf("put %s: %w", key, err))
		return
	}
	// A put's header revision is the key's new mod revision.
	wk.lastRev[key] = resp.Header.Revision
	wk.acked(ret)
	wk.record(call, ret, in, kvOutput{rev: resp.Header.Revision})
}

// txn puts value if the key is still at the revision this worker last
// saw; otherwise its Else branch reads the key, in the same revision, so
// the history shows what made the compare fail.
func (wk *loadWorker) txn(ctx context.Context, key, value string) {
	in := kvInput{kind: kvTxn, key: key, value: value, ifRev: wk.lastRev[key]}
	call := wk.w.now()
	resp, err := wk.w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", in.ifRev)).
		Then(clientv3.OpPut(key, value)).
		Else(clientv3.OpGet(key)).
		Commit()
	ret := wk.w.now()
	if err == nil && !resp.Succeeded && len(resp.Responses) != 1 {
		err = fmt.Errorf("%d responses from the Else branch, want 1", len(resp.Responses))
	}
	if err != nil {
		wk.unknown(call, in, fmt.Errorf("txn %s: %w", key, err))
		return
	}
	out := kvOutput{succeeded: resp.Succeeded}
	if resp.Succeeded {
		out.rev = resp.Header.Revision
		wk.lastRev[key] = out.rev
	} else {
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			out.value, out.modRev = string(kvs[0].Value), kvs[0].ModRevision
		}
		wk.lastRev[key] = out.modRev
		wk.res.txnCompareFailed++
	}
	wk.acked(ret)
	wk.record(call, ret, in, out)
}

func (wk *loadWorker) record(call, ret int64, in kvInput, out kvOutput) {
	wk.res.ok.add(in.kind)
	wk.ops = append(wk.ops, recordedOp(wk.id, call, ret, in, out))
}

func (wk *loadWorker) acked(ret int64) {
	wk.acks = append(wk.acks, ret)
	wk.w.acked.Add(1)
}

// unknown records a write that got an error. Whatever the error, the
// request may have reached the leader and been committed, so it goes in
// the history as maybe applied, not as failed.
func (wk *loadWorker) unknown(call int64, in kvInput, err error) {
	wk.res.unknown++
	wk.failed(in.kind, err)
	wk.ops = append(wk.ops, recordedOp(wk.id, call, unknownReturn, in, kvOutput{unknown: true, err: err.Error()}))
}

// failed counts an error, unless stop caused it.
func (wk *loadWorker) failed(kind kvOpKind, err error) {
	if wk.w.ctx.Err() != nil {
		return
	}
	wk.res.failed.add(kind)
	if wk.res.firstErr == nil {
		wk.res.firstErr = err
	}
}

func recordedOp(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: in, Output: out}
}

func getOutput(resp *clientv3.GetResponse) kvOutput {
	if len(resp.Kvs) == 0 {
		return kvOutput{}
	}
	return kvOutput{value: string(resp.Kvs[0].Value), modRev: resp.Kvs[0].ModRevision}
}

// The model.

type kvOpKind int

const (
	kvGet kvOpKind = iota
	kvPut
	kvTxn
)

// kvInput is what one op asked of one key.
type kvInput struct {
	kind  kvOpKind
	key   string
	value string // put, txn: the value to write, unique in the history
	ifRev int64  // txn: the mod revision its compare expects
}

// kvOutput is what the op returned.
type kvOutput struct {
	// unknown: a write that got an error, so it may or may not have been
	// applied. Its return time is unknownReturn.
	unknown bool
	err     string
	// value and modRev: what a get, or a txn whose compare failed, saw of
	// the key; "" and 0 when it does not exist.
	value  string
	modRev int64
	// rev is the header revision of a put, or of a txn whose compare
	// held: the key's new mod revision.
	rev       int64
	succeeded bool // txn: the compare held and the put was applied
}

// unknownReturn is the return time of a write whose outcome is unknown.
// It makes the write concurrent with everything after its call, so
// porcupine may order it anywhere from then on; ordered after every other
// op, it is as if it was never applied.
const unknownReturn = math.MaxInt64

// kvState is the model of one key.
type kvState struct {
	value string // "" at rev 0: the key does not exist
	rev   int64  // its mod revision; only a lower bound if revUnknown
	// revUnknown: value was written by a write whose response was lost,
	// so its revision is only known to be at least rev. The next read of
	// the key, or acknowledged txn on it, pins it down.
	revUnknown bool
}

// mayBeAt: the key's mod revision in s may be r.
func (s kvState) mayBeAt(r int64) bool {
	if s.revUnknown {
		return r >= s.rev
	}
	return r == s.rev
}

// read is the state after a read of s returned value at modRev, or false
// if no read of s returns that. Values are unique, so the value names the
// write that made it.
func (s kvState) read(value string, modRev int64) (kvState, bool) {
	if value != s.value || !s.mayBeAt(modRev) {
		return s, false
	}
	return kvState{value: value, rev: modRev}, true
}

// stepKV is every state one op may leave s in, given what it returned;
// none if it could not have returned that.
func stepKV(s kvState, in kvInput, out kvOutput) []kvState {
	switch {
	case in.kind == kvGet:
		if next, ok := s.read(out.value, out.modRev); ok {
			return []kvState{next}
		}
	case in.kind == kvPut && out.unknown:
		// Applied here. Never applied is covered by ordering it last.
		return []kvState{{value: in.value, rev: s.rev + 1, revUnknown: true}}
	case in.kind == kvPut:
		// Revisions only grow: a put's is above the one it replaces.
		if out.rev > s.rev {
			return []kvState{{value: in.value, rev: out.rev}}
		}
	case out.unknown: // a txn
		// It had no effect here: its compare failed, or it was never
		// applied (the same as ordering it last, where s need not hold
		// ifRev). Or its compare held and its put was applied, above ifRev.
		next := []kvState{s}
		if s.mayBeAt(in.ifRev) {
			next = append(next, kvState{value: in.value, rev: in.ifRev + 1, revUnknown: true})
		}
		return next
	case out.succeeded:
		if s.mayBeAt(in.ifRev) && out.rev > in.ifRev {
			return []kvState{{value: in.value, rev: out.rev}}
		}
	default: // a txn whose compare failed: its Else branch read the key
		if next, ok := s.read(out.value, out.modRev); ok && out.modRev != in.ifRev {
			return []kvState{next}
		}
	}
	return nil
}

// kvModel is etcd's key-value store as porcupine sees it: partitioned by
// key, since ops touch one key each. It does not check order across keys.
func kvModel() porcupine.Model {
	m := porcupine.NondeterministicModel{
		Partition: partitionByKey,
		Init:      func() []any { return []any{kvState{}} },
		Step: func(state, input, output any) []any {
			var next []any
			for _, s := range stepKV(state.(kvState), input.(kvInput), output.(kvOutput)) {
				next = append(next, s)
			}
			return next
		},
		Hash: func(state any) uint64 {
			s := state.(kvState)
			h := fnv.New64a()
			fmt.Fprintf(h, "%s\x00%d\x00%t", s.value, s.rev, s.revUnknown)
			return h.Sum64()
		},
		DescribeOperation: describeKVOp,
		DescribeState:     func(state any) string { return describeKVState(state.(kvState)) },
	}
	return m.ToModel()
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		key := op.Input.(kvInput).key
		byKey[key] = append(byKey[key], op)
	}
	var parts [][]porcupine.Operation
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		parts = append(parts, byKey[key])
	}
	return parts
}

func describeKVState(s kvState) string {
	switch {
	case s.value == "" && s.rev == 0:
		return "absent"
	case s.revUnknown:
		return fmt.Sprintf("%s@>=%d", s.value, s.rev)
	}
	return fmt.Sprintf("%s@%d", s.value, s.rev)
}

func describeKVOp(input, output any) string {
	in, out := input.(kvInput), output.(kvOutput)
	seen := describeKVState(kvState{value: out.value, rev: out.modRev})
	var call string
	switch in.kind {
	case kvGet:
		return fmt.Sprintf("get(%s) -> %s", in.key, seen)
	case kvPut:
		call = fmt.Sprintf("put(%s, %s)", in.key, in.value)
	default:
		call = fmt.Sprintf("txn(%s: if rev=%d put %s)", in.key, in.ifRev, in.value)
	}
	switch {
	case out.unknown:
		return fmt.Sprintf("%s -> unknown: %s", call, out.err)
	case in.kind == kvTxn && !out.succeeded:
		return fmt.Sprintf("%s -> compare failed, saw %s", call, seen)
	}
	return fmt.Sprintf("%s -> @%d", call, out.rev)
}

// checkHistory runs porcupine on history: Ok, Illegal, or Unknown if it
// did not decide within timeout.
func checkHistory(history []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(kvModel(), history, timeout)
}

// checkLinearizable fails the test unless porcupine finds history
// linearizable within timeout. Otherwise it writes porcupine's
// visualization to a file left in os.TempDir, for a person to open.
func checkLinearizable(t *testing.T, history []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	res, info := checkHistory(history, timeout)
	if res == porcupine.Ok {
		t.Logf("linearizable: %d ops", len(history))
		return
	}
	verdict := "is not linearizable"
	if res == porcupine.Unknown {
		verdict = fmt.Sprintf("was not decided linearizable within %s", timeout)
	}
	path, err := writeVisualization(info)
	if err != nil {
		t.Errorf("history of %d ops %s; and %v", len(history), verdict, err)
		return
	}
	t.Errorf("history of %d ops %s; visualization: %s", len(history), verdict, path)
}

func writeVisualization(info porcupine.LinearizationInfo) (string, error) {
	f, err := os.CreateTemp("", "etcdvisor-linearizability-*.html")
	if err != nil {
		return "", fmt.Errorf("create visualization file: %w", err)
	}
	err = porcupine.Visualize(kvModel(), info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write visualization %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

// The checker's own tests.

func TestLinearizabilityCheckerAcceptsARealClusterHistory(t *testing.T) {
	const ops = 1500
	c := NewCluster(t, WithMembers(3))
	w := startWorkload(t, c.Client(0, 1, 2), workloadOptions{maxOps: ops})
	res := w.wait()
	t.Logf("ok %+v, failed %+v, compare failed %d, unknown %d, longest write gap %s, first error %v",
		res.ok, res.failed, res.txnCompareFailed, res.unknown, res.longestWriteGap, res.firstErr)
	if got := res.ok.total() + res.failed.total(); got != ops {
		t.Errorf("the workload did %d ops, want its cap of %d", got, ops)
	}
	if got, want := w.writesAcked(), res.ok.put+res.ok.txn; got != want {
		t.Errorf("%d writes acknowledged as they came, %d in the tally", got, want)
	}
	// A history without every kind of answer would not test the model.
	if res.ok.get == 0 || res.ok.put == 0 || res.ok.txn-res.txnCompareFailed == 0 || res.txnCompareFailed == 0 {
		t.Errorf("want gets, puts, txns whose compare held and txns whose compare failed; got ok %+v, compare failed %d", res.ok, res.txnCompareFailed)
	}

	w.check(t)
	h := w.history()
	if want := res.ok.total() + res.unknown + len(w.keys); len(h) != want {
		t.Errorf("history has %d ops, want %d answered, %d unknown and %d final reads", len(h), res.ok.total(), res.unknown, len(w.keys))
	}

	// The same real history with one read made stale must be rejected.
	stale, ok := withOneStaleRead(h)
	if !ok {
		t.Fatal("no read in the history comes after two acknowledged writes of its key")
	}
	if got, _ := checkHistory(stale, time.Minute); got != porcupine.Illegal {
		t.Errorf("with one read made stale, porcupine says %s, want %s", got, porcupine.Illegal)
	}

	// Stopped while running, as the membership tests will: the ops in
	// flight are cut short, and their writes go in as unknown.
	w = startWorkload(t, c.Client(0, 1, 2), workloadOptions{})
	waitUntil(t, "200 writes acknowledged", func() bool { return w.writesAcked() >= 200 })
	res = w.stop()
	t.Logf("stopped mid-run: ok %+v, unknown %d", res.ok, res.unknown)
	w.check(t)
	c.Stop()
}

// withOneStaleRead copies history and has one get return an older value:
// a get that began after the write it saw had returned, now seeing an
// acknowledged write of the same key with a lower revision. That write
// came before the one the get saw, which came before the get, and values
// are unique: no linearization lets the get see it.
func withOneStaleRead(history []porcupine.Operation) ([]porcupine.Operation, bool) {
	type write struct {
		value    string
		rev, ret int64
	}
	writes := map[string][]write{} // acknowledged writes by key
	for _, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if (in.kind == kvPut && !out.unknown) || (in.kind == kvTxn && out.succeeded) {
			writes[in.key] = append(writes[in.key], write{in.value, out.rev, op.Return})
		}
	}
	for i, op := range history {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		if in.kind != kvGet || out.modRev == 0 {
			continue
		}
		ws := writes[in.key]
		seenDone := slices.ContainsFunc(ws, func(w write) bool { return w.rev == out.modRev && w.ret < op.Call })
		older := slices.IndexFunc(ws, func(w write) bool { return w.rev < out.modRev })
		if seenDone && older >= 0 {
			stale := slices.Clone(history)
			stale[i].Output = kvOutput{value: ws[older].value, modRev: ws[older].rev}
			return stale, true
		}
	}
	return nil, false
}

// Hand-built histories, on one key, with times in arbitrary units.

const histKey = "/linz/test/k"

func histGet(client int, call, ret int64, value string, modRev int64) porcupine.Operation {
	return recordedOp(client, call, ret, kvInput{kind: kvGet, key: histKey}, kvOutput{value: value, modRev: modRev})
}

func histPut(client int, call, ret int64, value string, rev int64) porcupine.Operation {
	return recordedOp(client, call, ret, kvInput{kind: kvPut, key: histKey, value: value}, kvOutput{rev: rev})
}

func histLostPut(client int, call int64, value string) porcupine.Operation {
	return recordedOp(client, call, unknownReturn, kvInput{kind: kvPut, key: histKey, value: value}, kvOutput{unknown: true, err: "timeout"})
}

// histTxn is a txn whose compare held (it wrote at rev) or failed (it saw
// seen at seenRev).
func histTxn(client int, call, ret, ifRev int64, value string, succeeded bool, rev int64, seen string, seenRev int64) porcupine.Operation {
	out := kvOutput{succeeded: succeeded, rev: rev, value: seen, modRev: seenRev}
	return recordedOp(client, call, ret, kvInput{kind: kvTxn, key: histKey, value: value, ifRev: ifRev}, out)
}

func histLostTxn(client int, call, ifRev int64, value string) porcupine.Operation {
	return recordedOp(client, call, unknownReturn, kvInput{kind: kvTxn, key: histKey, value: value, ifRev: ifRev}, kvOutput{unknown: true, err: "timeout"})
}

type historyCase struct {
	name    string
	history []porcupine.Operation
	want    porcupine.CheckResult
}

// checkHistoryCases asserts porcupine's verdict on each history, and that the
// visualization a failure would write renders.
func checkHistoryCases(t *testing.T, cases []historyCase) {
	t.Helper()
	for _, tc := range cases {
		got, info := checkHistory(tc.history, 10*time.Second)
		if got != tc.want {
			var ops []string
			for _, op := range tc.history {
				ops = append(ops, fmt.Sprintf("[%d, %d] %s", op.Call, op.Return, describeKVOp(op.Input, op.Output)))
			}
			t.Errorf("%s: porcupine says %s, want %s; history:\n%s", tc.name, got, tc.want, strings.Join(ops, "\n"))
		}
		if err := porcupine.Visualize(kvModel(), info, io.Discard); err != nil {
			t.Errorf("%s: visualize: %v", tc.name, err)
		}
	}
}

func TestLinearizabilityCheckerRejectsAStaleRead(t *testing.T) {
	checkHistoryCases(t, []historyCase{
		{"a read after two writes sees the second", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histPut(1, 20, 30, "v2", 3), histGet(2, 40, 50, "v2", 3),
		}, porcupine.Ok},
		{"a read after two writes sees the first", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histPut(1, 20, 30, "v2", 3), histGet(2, 40, 50, "v1", 2),
		}, porcupine.Illegal},
		{"a read concurrent with the second write sees the first", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histPut(1, 20, 30, "v2", 3), histGet(2, 25, 50, "v1", 2),
		}, porcupine.Ok},
		{"a read sees a value at another revision than it was written at", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histGet(2, 20, 30, "v1", 4),
		}, porcupine.Illegal},
		{"a read sees the second write, a later one the first", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histPut(1, 20, 60, "v2", 3), histGet(2, 25, 35, "v2", 3), histGet(3, 40, 50, "v1", 2),
		}, porcupine.Illegal},
	})
}

func TestLinearizabilityCheckerRejectsALostWrite(t *testing.T) {
	checkHistoryCases(t, []historyCase{
		{"a read after a write sees it", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histGet(1, 20, 30, "v1", 2),
		}, porcupine.Ok},
		{"a read after a write sees the key absent", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histGet(1, 20, 30, "", 0),
		}, porcupine.Illegal},
		{"a write with an unknown outcome does not excuse losing an acknowledged one", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histLostPut(1, 5, "v2"), histGet(2, 20, 30, "", 0),
		}, porcupine.Illegal},
		{"a write's revision is below the one it replaced", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 5), histPut(1, 20, 30, "v2", 3),
		}, porcupine.Illegal},
	})
}

func TestLinearizabilityCheckerAllowsOnlyWhatAnUnknownWriteCouldDo(t *testing.T) {
	checkHistoryCases(t, []historyCase{
		{"a read sees an unknown put", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histGet(1, 10, 20, "v1", 5),
		}, porcupine.Ok},
		{"a read does not see an unknown put", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histGet(1, 10, 20, "", 0),
		}, porcupine.Ok},
		{"a read does not see an unknown put, then a later read does", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histGet(1, 10, 20, "", 0), histGet(1, 30, 40, "v1", 5),
		}, porcupine.Ok},
		{"a read sees a value never written", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histGet(1, 10, 20, "ghost", 5),
		}, porcupine.Illegal},
		{"a read sees an unknown put, a later read does not", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histGet(1, 10, 20, "v1", 5), histGet(1, 30, 40, "", 0),
		}, porcupine.Illegal},
		{"a read sees an unknown put before its call", []porcupine.Operation{
			histGet(1, 0, 10, "v1", 5), histLostPut(0, 20, "v1"),
		}, porcupine.Illegal},
		{"an unknown put is read at a revision below the one it replaced", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 4), histLostPut(1, 20, "v2"), histGet(2, 30, 40, "v2", 3),
		}, porcupine.Illegal},
		{"an unknown put is read above the one it replaced", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 4), histLostPut(1, 20, "v2"), histGet(2, 30, 40, "v2", 5),
		}, porcupine.Ok},
		{"an unknown put lands after a later acknowledged one", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histPut(1, 10, 20, "v2", 7), histGet(2, 30, 40, "v1", 9),
		}, porcupine.Ok},
		{"an unknown put lands before a later acknowledged one, yet is read after it", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histPut(1, 10, 20, "v2", 7), histGet(2, 30, 40, "v1", 5),
		}, porcupine.Illegal},
		{"an unknown txn whose compare could hold is read", []porcupine.Operation{
			histLostTxn(0, 0, 0, "v1"), histGet(1, 10, 20, "v1", 3),
		}, porcupine.Ok},
		// Applied before the put, it would leave the key above revision
		// 1, which the put could not then have written at.
		{"an unknown txn whose compare could hold is not applied", []porcupine.Operation{
			histLostTxn(0, 0, 0, "v1"), histGet(1, 10, 20, "", 0), histPut(1, 30, 40, "v2", 1), histGet(1, 50, 60, "v2", 1),
		}, porcupine.Ok},
		{"an unknown txn whose compare cannot hold has no effect", []porcupine.Operation{
			histPut(0, 0, 10, "v0", 2), histLostTxn(1, 20, 0, "v1"), histGet(2, 30, 40, "v0", 2),
		}, porcupine.Ok},
		{"an unknown txn whose compare could not hold is read", []porcupine.Operation{
			histPut(0, 0, 10, "v0", 2), histLostTxn(1, 20, 0, "v1"), histGet(2, 30, 40, "v1", 5),
		}, porcupine.Illegal},
		{"an unknown txn compares against an unknown put's revision", []porcupine.Operation{
			histLostPut(0, 0, "v1"), histLostTxn(1, 10, 4, "v2"), histGet(2, 20, 30, "v2", 6), histGet(2, 40, 50, "v2", 6),
		}, porcupine.Ok},
	})
}

func TestLinearizabilityCheckerRejectsAWrongTxnCompare(t *testing.T) {
	checkHistoryCases(t, []historyCase{
		{"a txn's compare holds on the current revision", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histTxn(1, 20, 30, 2, "v2", true, 4, "", 0), histGet(2, 40, 50, "v2", 4),
		}, porcupine.Ok},
		{"a txn's compare holds on an old revision", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histTxn(1, 20, 30, 0, "v2", true, 4, "", 0),
		}, porcupine.Illegal},
		{"a txn's compare fails and it sees the current value", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histTxn(1, 20, 30, 0, "v2", false, 0, "v1", 2),
		}, porcupine.Ok},
		{"a txn's compare fails on the revision it expects", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histTxn(1, 20, 30, 2, "v2", false, 0, "v1", 2),
		}, porcupine.Illegal},
		{"a txn's compare fails and it sees an old value", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histPut(0, 20, 30, "v2", 3), histTxn(1, 40, 50, 0, "v3", false, 0, "v1", 2),
		}, porcupine.Illegal},
		{"a failed txn's put is read", []porcupine.Operation{
			histPut(0, 0, 10, "v1", 2), histTxn(1, 20, 30, 0, "v2", false, 0, "v1", 2), histGet(2, 40, 50, "v2", 4),
		}, porcupine.Illegal},
	})
}
