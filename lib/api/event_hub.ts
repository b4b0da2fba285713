/**
 * Fan-out of agent events to API subscribers (Server-Sent Events), built so that a slow or stalled client
 * never blocks the agent: `publish` is synchronous and O(subscribers), each subscriber has a bounded queue,
 * and a subscriber whose queue overflows is cut off (told how many it missed) rather than waited for.
 *
 * Every event gets a sequence number, its SSE id. The hub keeps the last `retain` events, so a client that
 * reconnects with `Last-Event-ID` gets what it missed, or is told how many events are gone.
 */

export type HubEvent = { id: number; data: string };

export type Subscription = AsyncIterable<HubEvent> & {
  /** Events between the client's Last-Event-ID and the oldest retained one: lost to it. */
  readonly missed: number;
  close(): void;
};

export type EventHubOptions = {
  /** Events kept for resume. */
  retain?: number;
  /** Events queued for one subscriber before it is cut off. */
  queueLimit?: number;
};

type Subscriber = {
  queue: HubEvent[];
  wake: (() => void) | undefined;
  closed: boolean;
  /** Set when the subscriber was cut off for being too slow. */
  overflowed: boolean;
};

export class EventHub {
  readonly #retain: number;
  readonly #queueLimit: number;
  readonly #recent: HubEvent[] = [];
  readonly #subscribers = new Set<Subscriber>();
  #next = 1;
  /** Subscribers cut off for being too slow, over the hub's life. */
  overflows = 0;

  constructor(options: EventHubOptions = {}) {
    this.#retain = options.retain ?? 10_000;
    this.#queueLimit = options.queueLimit ?? 1_000;
  }

  /** The id the next event will get. */
  get nextId(): number {
    return this.#next;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Hands `data` (one JSON event line) to every subscriber; never waits. Returns its id. */
  publish(data: string): number {
    const event = { id: this.#next++, data };
    this.#recent.push(event);
    // Trimmed in one splice once twice the retained count: a splice per event moved the whole array each
    // time (O(retain) per event, the most of a flood's cost).
    if (this.#recent.length >= 2 * this.#retain) this.#recent.splice(0, this.#recent.length - this.#retain);
    for (const subscriber of this.#subscribers) {
      if (subscriber.queue.length >= this.#queueLimit) {
        subscriber.overflowed = true;
        this.overflows++;
        this.#drop(subscriber);
        continue;
      }
      subscriber.queue.push(event);
      subscriber.wake?.();
    }
    return event.id;
  }

  /**
   * Subscribes to events after `lastEventId` (those still retained first), or to new events only when it
   * is undefined. An id from the future (another agent's) is treated as "new events only".
   */
  subscribe(lastEventId?: number): Subscription {
    const subscriber: Subscriber = { queue: [], wake: undefined, closed: false, overflowed: false };
    let missed = 0;
    if (lastEventId !== undefined && lastEventId < this.#next - 1) {
      const recent = this.#recent.slice(-this.#retain);
      const oldest = recent[0]?.id ?? this.#next;
      missed = Math.max(0, oldest - lastEventId - 1);
      subscriber.queue.push(...recent.filter((event) => event.id > lastEventId));
    }
    this.#subscribers.add(subscriber);
    const drop = () => this.#drop(subscriber);
    return {
      missed,
      close: drop,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const event = subscriber.queue.shift();
            if (event) {
              yield event;
              continue;
            }
            if (subscriber.closed) {
              if (subscriber.overflowed) throw new SubscriberOverflowError();
              return;
            }
            await new Promise<void>((resolve) => (subscriber.wake = resolve));
            subscriber.wake = undefined;
          }
        } finally {
          drop();
        }
      },
    };
  }

  /** Ends every subscription (agent shutdown). */
  close(): void {
    for (const subscriber of this.#subscribers) this.#drop(subscriber);
  }

  #drop(subscriber: Subscriber): void {
    if (!this.#subscribers.delete(subscriber) && subscriber.closed) return;
    subscriber.closed = true;
    if (subscriber.overflowed) subscriber.queue.length = 0;
    subscriber.wake?.();
  }
}

/** A subscriber read too slowly and was cut off; it may reconnect with Last-Event-ID. */
export class SubscriberOverflowError extends Error {
  override name = "SubscriberOverflowError";
  constructor() {
    super("The client read events too slowly and was cut off; reconnect with Last-Event-ID to resume");
  }
}
