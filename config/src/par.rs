//! Order-preserving parallel work over contiguous parts of a slice, on scoped threads.
//!
//! Only large inputs are split (parsing and validating 10k routes is the case in mind); a
//! small config runs on the calling thread, and a failed thread spawn runs its part there
//! too, so the result never depends on how many threads ran.

/// Upper bound on worker threads.
const MAX_THREADS: usize = 8;

/// Splits `items` into contiguous parts of about equal `weight`, one per core (at most
/// [`MAX_THREADS`]), and runs `work` on each; results come back in slice order. When the
/// total weight is below `min_total`, `work` runs once on the whole slice, here.
pub(crate) fn map_parts<T, R, W, F>(items: &[T], weight: W, min_total: usize, work: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    W: Fn(&T) -> usize,
    F: Fn(&[T]) -> R + Sync,
{
    let total: usize = items.iter().map(&weight).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(MAX_THREADS).min(items.len());
    if total < min_total || threads < 2 {
        return vec![work(items)];
    }
    let mut parts = Vec::with_capacity(threads);
    let (mut start, mut sum) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        sum += weight(item);
        if sum * threads >= total * (parts.len() + 1) && parts.len() + 1 < threads {
            parts.push(&items[start..=i]);
            start = i + 1;
        }
    }
    parts.push(&items[start..]);
    let work = &work;
    std::thread::scope(|scope| {
        let running: Vec<_> = parts
            .iter()
            .map(|part| {
                std::thread::Builder::new()
                    .name("switchyard-config".into())
                    .spawn_scoped(scope, move || work(part))
                    // Could not spawn: do this part here instead.
                    .map_err(|_| work(part))
            })
            .collect();
        running
            .into_iter()
            .map(|r| match r {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(done) => done,
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_slice_in_order() {
        let items: Vec<usize> = (0..1000).collect();
        let parts = map_parts(&items, |_| 1, 10, |part| part.to_vec());
        assert_eq!(parts.concat(), items);
        let small = map_parts(&items, |_| 1, 10_000, |part| part.len());
        assert_eq!(small, [1000]);
        let empty: Vec<Vec<usize>> = map_parts(&[] as &[usize], |_| 1, 0, |p| p.to_vec());
        assert_eq!(empty.concat(), Vec::<usize>::new());
    }
}
