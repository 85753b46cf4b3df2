//! Quorum math, apart from everything else: given what each voter
//! acknowledged, what does a majority acknowledge?

/// The outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the election cannot be won any more.
    Lost,
    /// Neither yet.
    Pending,
}

/// The number of voters that make a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The largest value that a majority of `acked` is at or above: for match
/// indexes this is the highest index stored on a majority.
///
/// `acked` holds one value per voter and is reordered in place (the caller
/// passes a scratch buffer, so no allocation happens on the hot path).
/// Returns 0 for an empty set.
pub fn committed_value(acked: &mut [u64]) -> u64 {
    if acked.is_empty() {
        return 0;
    }
    let k = acked.len() - majority(acked.len());
    // After select_nth_unstable, acked[k] is the k-th smallest; the values
    // above it are held by majority - 1 other voters, so majority voters hold
    // at least acked[k].
    *acked.select_nth_unstable(k).1
}

/// Counts votes: `granted` and `refused` among `voters` voters.
pub fn vote_result(voters: usize, granted: usize, refused: usize) -> VoteResult {
    let need = majority(voters);
    if granted >= need {
        VoteResult::Won
    } else if refused > voters - need {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_sizes() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn committed_value_is_the_majority_floor() {
        assert_eq!(committed_value(&mut []), 0);
        assert_eq!(committed_value(&mut [7]), 7);
        assert_eq!(committed_value(&mut [5, 9]), 5);
        assert_eq!(committed_value(&mut [1, 9, 5]), 5);
        assert_eq!(committed_value(&mut [1, 2, 9, 5]), 2);
        assert_eq!(committed_value(&mut [4, 4, 1, 9, 5]), 4);
    }

    #[test]
    fn committed_value_matches_brute_force() {
        // For every small multiset, the answer is the largest v such that at
        // least a majority of values are >= v.
        for n in 1..=5usize {
            let mut values = vec![0u64; n];
            let combos = 4u64.pow(n as u32);
            for code in 0..combos {
                let mut c = code;
                for v in values.iter_mut() {
                    *v = c % 4;
                    c /= 4;
                }
                let brute = (0..4u64)
                    .filter(|&v| values.iter().filter(|&&x| x >= v).count() >= majority(n))
                    .max()
                    .unwrap();
                let mut scratch = values.clone();
                assert_eq!(committed_value(&mut scratch), brute, "{values:?}");
            }
        }
    }

    #[test]
    fn votes() {
        assert_eq!(vote_result(3, 2, 0), VoteResult::Won);
        assert_eq!(vote_result(3, 1, 1), VoteResult::Pending);
        assert_eq!(vote_result(3, 1, 2), VoteResult::Lost);
        assert_eq!(vote_result(4, 2, 2), VoteResult::Lost);
        assert_eq!(vote_result(4, 2, 1), VoteResult::Pending);
        assert_eq!(vote_result(1, 1, 0), VoteResult::Won);
    }
}
