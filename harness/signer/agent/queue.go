package agent

import (
	"sync"
	"time"

	"hilbench/harness/issue"
	"hilbench/harness/signer/audit"
)

// job is one issue request waiting for the DAK: its CSR passed the
// profile's checks on the connection.
type job struct {
	c        *conn
	id       string
	target   string
	checked  *issue.Checked
	peer     *audit.Peer
	received time.Time
}

// scheduler queues jobs per connection and hands them to the worker round
// robin across connections, so one client's burst cannot starve another.
type scheduler struct {
	maxTotal, maxPer int

	mu     sync.Mutex
	ring   []*conn // connections with queued jobs, next first
	total  int
	closed bool
	wake   chan struct{} // capacity 1: "there may be work"
}

func newScheduler(maxTotal, maxPer int) *scheduler {
	return &scheduler{maxTotal: maxTotal, maxPer: maxPer, wake: make(chan struct{}, 1)}
}

// push queues j. It fails with ErrShuttingDown or ErrBusy.
func (q *scheduler) push(j *job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return ErrShuttingDown
	case q.total >= q.maxTotal, len(j.c.queue) >= q.maxPer:
		return ErrBusy
	}
	j.c.queue = append(j.c.queue, j)
	if len(j.c.queue) == 1 {
		q.ring = append(q.ring, j.c)
	}
	q.total++
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// pop takes the next job: the first of the connection whose turn it is,
// which then goes to the back of the ring. nil if none (or closed).
func (q *scheduler) pop() *job {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.ring) == 0 {
		return nil
	}
	c := q.ring[0]
	q.ring = q.ring[1:]
	j := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	if len(c.queue) > 0 {
		q.ring = append(q.ring, c)
	}
	q.total--
	return j
}

// drop removes a connection's queued jobs (it went away) and returns them.
func (q *scheduler) drop(c *conn) []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	jobs := c.queue
	if len(jobs) == 0 {
		return nil
	}
	c.queue = nil
	q.total -= len(jobs)
	for i, rc := range q.ring {
		if rc == c {
			q.ring = append(q.ring[:i], q.ring[i+1:]...)
			break
		}
	}
	return jobs
}

// close refuses further jobs and returns those still queued.
func (q *scheduler) close() []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	var jobs []*job
	for _, c := range q.ring {
		jobs = append(jobs, c.queue...)
		c.queue = nil
	}
	q.ring, q.total = nil, 0
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return jobs
}

func (q *scheduler) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}
