package webhook

import (
	"context"
	"sync"
)

// workQueue runs jobs on a fixed number of goroutines from a bounded
// queue. enqueue never blocks: when the queue is full (or the queue is
// shut down) the job is refused.
type workQueue struct {
	jobs   chan func(context.Context)
	stop   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.RWMutex
	closed bool
}

func newWorkQueue(workers, size int) *workQueue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &workQueue{
		jobs:   make(chan func(context.Context), size),
		stop:   make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
	}
	q.wg.Add(workers)
	for range workers {
		go q.work()
	}
	return q
}

func (q *workQueue) work() {
	defer q.wg.Done()
	for {
		select {
		case j := <-q.jobs:
			j(q.ctx)
		case <-q.stop:
			for {
				select {
				case j := <-q.jobs:
					j(q.ctx)
				default:
					return
				}
			}
		}
	}
}

// enqueue queues j and reports whether it was accepted.
func (q *workQueue) enqueue(j func(context.Context)) bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return false
	}
	select {
	case q.jobs <- j:
		return true
	default:
		return false
	}
}

// shutdown refuses new jobs, lets the workers finish the queue until ctx
// ends, then cancels the jobs' context and waits for the workers.
func (q *workQueue) shutdown(ctx context.Context) {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.stop)
		done := make(chan struct{})
		go func() { q.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			q.cancel()
			<-done
		}
		q.cancel()
	})
}
