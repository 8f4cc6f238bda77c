//! A world simulator: users with latent interests, creators of varying
//! quality, videos with topical captions, hashtags and sounds, and a watch
//! model in which completion depends on how well a video's topic matches a
//! user's interests, on its creator's quality, and on noise. Its output is
//! what the offline evaluation, the tests, the demo and the benchmarks use.
//!
//! Two kinds of log ([`LogStyle`]): `Uniform`, where every user is active
//! all along and exposure is popularity × interest; and `Realistic`
//! ([`realistic`]), shaped like real interaction logs — long-tailed item
//! popularity and user activity, users and videos arriving over time,
//! choices made from a popularity-ordered page with position bias,
//! interests that drift — on which plain popularity is hard to beat.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};

use crate::engine::{VideoDoc, Watch};

mod realistic;

pub struct Topic {
    pub name: &'static str,
    pub hashtags: &'static [&'static str],
    pub words: &'static [&'static str],
    pub sounds: &'static [&'static str],
}

const TEMPLATES: &[&str] = &[
    "my favourite {w} of the week",
    "you have to see this {w}",
    "beginner's guide to {w}",
    "what nobody tells you about {w}",
    "one minute of pure {w}",
    "trying {w} for the first time",
    "{w} tips that actually work",
];

pub const TOPICS: &[Topic] = &[
    Topic {
        name: "cooking",
        hashtags: &["cooking", "recipe", "foodie"],
        words: &[
            "pasta carbonara",
            "ramen",
            "sourdough bread",
            "chicken curry",
            "chocolate cake",
            "tacos",
            "sushi rolls",
            "vegan salad",
        ],
        sounds: &["kitchen beats", "sizzle lofi"],
    },
    Topic {
        name: "fitness",
        hashtags: &["fitness", "workout", "gym"],
        words: &[
            "leg day",
            "push ups",
            "deadlift form",
            "home workout",
            "running a marathon",
            "yoga stretch",
            "abs routine",
            "protein shake",
        ],
        sounds: &["pump it up", "gym motivation"],
    },
    Topic {
        name: "travel",
        hashtags: &["travel", "wanderlust", "backpacking"],
        words: &[
            "Tokyo street walk",
            "Iceland waterfalls",
            "beaches of Bali",
            "Paris on a budget",
            "hiking in Patagonia",
            "Lisbon trams",
            "desert camping",
            "Swiss Alps train",
        ],
        sounds: &["road trip", "island breeze"],
    },
    Topic {
        name: "gaming",
        hashtags: &["gaming", "gamer", "esports"],
        words: &[
            "speedrun",
            "boss fight",
            "minecraft build",
            "ranked match",
            "retro console",
            "open world quest",
            "clutch play",
            "new game review",
        ],
        sounds: &["8bit anthem", "arcade loop"],
    },
    Topic {
        name: "pets",
        hashtags: &["pets", "dogsoftiktok", "catlover"],
        words: &[
            "golden retriever puppy",
            "cat knocking things over",
            "parrot talking",
            "rescue dog",
            "kitten zoomies",
            "dog tricks",
            "hamster maze",
            "bunny eating",
        ],
        sounds: &["cute paws", "happy tails"],
    },
    Topic {
        name: "music",
        hashtags: &["music", "guitar", "singing"],
        words: &[
            "guitar solo",
            "piano cover",
            "acoustic song",
            "drum groove",
            "vocal warmup",
            "violin duet",
            "beat making",
            "live gig",
        ],
        sounds: &["unplugged", "studio session"],
    },
    Topic {
        name: "tech",
        hashtags: &["tech", "gadgets", "coding"],
        words: &[
            "new smartphone unboxing",
            "mechanical keyboard",
            "rust programming",
            "laptop review",
            "smart home setup",
            "AI tools",
            "PC build",
            "camera gear",
        ],
        sounds: &["synthwave", "future bass"],
    },
    Topic {
        name: "football",
        hashtags: &["football", "soccer", "goals"],
        words: &[
            "free kick goal",
            "last minute winner",
            "penalty shootout",
            "skills and dribbles",
            "stadium atmosphere",
            "goalkeeper save",
            "derby match",
            "training drills",
        ],
        sounds: &["stadium chant", "matchday"],
    },
    Topic {
        name: "fashion",
        hashtags: &["fashion", "style", "ootd"],
        words: &[
            "summer outfit",
            "thrift haul",
            "sneaker collection",
            "street style",
            "capsule wardrobe",
            "vintage jacket",
            "makeup look",
            "runway recap",
        ],
        sounds: &["catwalk", "vogue pop"],
    },
    Topic {
        name: "science",
        hashtags: &["science", "space", "physics"],
        words: &[
            "black holes",
            "rocket launch",
            "chemistry experiment",
            "mars rover",
            "quantum physics",
            "telescope view",
            "volcano eruption",
            "dinosaur fossils",
        ],
        sounds: &["cosmic ambient", "lab vibes"],
    },
    Topic {
        name: "diy",
        hashtags: &["diy", "woodworking", "homedecor"],
        words: &[
            "wooden table build",
            "room makeover",
            "painting a mural",
            "garden planter",
            "epoxy river",
            "shelf install",
            "upcycled furniture",
            "tile backsplash",
        ],
        sounds: &["workshop groove", "sawdust"],
    },
    Topic {
        name: "comedy",
        hashtags: &["comedy", "funny", "prank"],
        words: &[
            "office prank",
            "stand up bit",
            "parody sketch",
            "awkward moments",
            "fail compilation",
            "roommate jokes",
            "impressions",
            "blooper reel",
        ],
        sounds: &["laugh track", "silly tune"],
    },
];

/// How [`World::log`] generates its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStyle {
    /// Every user active over the whole period, `events_per_user` drawn
    /// uniformly; a video's exposure is its popularity × the user's
    /// interest in its topic.
    Uniform,
    /// Shaped like real logs (see [`realistic`]): `events_per_user` is the
    /// (minimum, maximum) of a log-normal activity with a median of 8.
    Realistic,
}

pub struct WorldConfig {
    pub users: usize,
    pub videos: usize,
    pub creators: usize,
    pub events_per_user: (usize, usize),
    pub days: i64,
    pub seed: u64,
    pub style: LogStyle,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            users: 300,
            videos: 2000,
            creators: 250,
            events_per_user: (20, 160),
            days: 14,
            seed: 42,
            style: LogStyle::Uniform,
        }
    }
}

impl WorldConfig {
    /// A world whose log looks like a real one: 1500 users, 3000 videos
    /// over four weeks, most users with a handful of events.
    pub fn realistic() -> Self {
        Self {
            users: 1500,
            videos: 3000,
            creators: 300,
            events_per_user: (1, 600),
            days: 28,
            seed: 42,
            style: LogStyle::Realistic,
        }
    }
}

pub struct SimVideo {
    pub doc: VideoDoc,
    pub topic: usize,
    pub popularity: f32,
    pub quality: f32,
}

pub struct SimUser {
    pub id: String,
    /// Interest in each topic, 0..1.
    pub interests: Vec<f32>,
}

impl SimUser {
    /// The topics this user cares most about, best first.
    pub fn favourite_topics(&self, n: usize) -> Vec<usize> {
        let mut t: Vec<usize> = (0..self.interests.len()).collect();
        t.sort_by(|&a, &b| self.interests[b].total_cmp(&self.interests[a]));
        t.truncate(n);
        t
    }
}

pub struct World {
    pub videos: Vec<SimVideo>,
    pub users: Vec<SimUser>,
    pub start: i64,
    rng: StdRng,
    noise: Normal<f32>,
}

pub const EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

impl World {
    /// Each video's text as the embedder sees it (caption, hashtags, sound).
    pub fn video_texts(&self) -> Vec<String> {
        self.videos
            .iter()
            .map(|v| {
                crate::embed::video_text(&v.doc.caption, &v.doc.hashtags, v.doc.sound.as_deref())
            })
            .collect()
    }

    pub fn generate(cfg: &WorldConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let quality = Normal::new(0.0f32, 0.6).unwrap_or_else(|_| unreachable!());
        let pop = LogNormal::new(0.0f32, 1.0).unwrap_or_else(|_| unreachable!());
        let creators: Vec<(usize, f32)> = (0..cfg.creators.max(1))
            .map(|_| (rng.random_range(0..TOPICS.len()), quality.sample(&mut rng)))
            .collect();
        let videos = (0..cfg.videos)
            .map(|i| {
                let c = rng.random_range(0..creators.len());
                let (topic, q) = creators[c];
                // Creators mostly stay on their topic.
                let topic = if rng.random::<f32>() < 0.85 {
                    topic
                } else {
                    rng.random_range(0..TOPICS.len())
                };
                let t = &TOPICS[topic];
                let word = t.words.choose(&mut rng).copied().unwrap_or(t.name);
                let template = TEMPLATES.choose(&mut rng).copied().unwrap_or("{w}");
                let mut hashtags: Vec<String> = t
                    .hashtags
                    .choose_multiple(&mut rng, 2)
                    .map(|s| s.to_string())
                    .collect();
                if rng.random::<f32>() < 0.3 {
                    hashtags.push("fyp".into());
                }
                let sound = if rng.random::<f32>() < 0.7 {
                    t.sounds.choose(&mut rng).map(|s| s.to_string())
                } else {
                    Some("original sound".to_string())
                };
                SimVideo {
                    doc: VideoDoc {
                        id: format!("v{i:06}"),
                        creator: format!("c{c:04}"),
                        caption: template.replace("{w}", word),
                        hashtags,
                        sound,
                        created_at: match cfg.style {
                            // A back catalogue, then new videos all along.
                            LogStyle::Realistic if rng.random::<f32>() < 0.7 => {
                                EPOCH + rng.random_range(0..cfg.days.max(1) * 86_400)
                            }
                            LogStyle::Uniform | LogStyle::Realistic => {
                                EPOCH - 86_400 + rng.random_range(0..86_400)
                            }
                        },
                    },
                    topic,
                    popularity: match cfg.style {
                        // Heavier tail: a few videos take most views.
                        LogStyle::Realistic => pop.sample(&mut rng).powf(1.6),
                        LogStyle::Uniform => pop.sample(&mut rng),
                    },
                    quality: q,
                }
            })
            .collect();
        let users = (0..cfg.users)
            .map(|i| {
                let mut interests: Vec<f32> = (0..TOPICS.len())
                    .map(|_| rng.random::<f32>() * 0.15)
                    .collect();
                let favs = rng.random_range(1..=3);
                for _ in 0..favs {
                    let t = rng.random_range(0..TOPICS.len());
                    interests[t] = rng.random_range(0.7..1.0);
                }
                SimUser {
                    id: format!("u{i:05}"),
                    interests,
                }
            })
            .collect();
        Self {
            videos,
            users,
            start: EPOCH,
            rng,
            noise: Normal::new(0.0, 0.5).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// How a user reacts to a video: the watch model.
    pub fn watch(&mut self, user: usize, video: usize, ts: i64) -> Watch {
        let u = &self.users[user];
        let v = &self.videos[video];
        let interest = u.interests[v.topic];
        let z = 5.0 * (interest - 0.45) + 0.8 * v.quality + self.noise.sample(&mut self.rng);
        let p = 1.0 / (1.0 + (-z).exp());
        let duration_ms: u64 = self.rng.random_range(8_000..60_000);
        let engaged = self.rng.random::<f32>() < p;
        let frac: f32 = if engaged {
            self.rng.random_range(0.85..1.0)
        } else {
            self.rng.random_range(0.02..0.5)
        };
        let completed = engaged && frac > 0.95;
        Watch {
            user: u.id.clone(),
            video: v.doc.id.clone(),
            watch_ms: if completed {
                duration_ms
            } else {
                (duration_ms as f32 * frac) as u64
            },
            duration_ms,
            completed,
            liked: engaged && self.rng.random::<f32>() < 0.4 * interest,
            shared: engaged && self.rng.random::<f32>() < 0.08 * interest,
            ts,
        }
    }

    /// A chronological interaction log. What a user is exposed to mixes
    /// platform popularity with self-selection by interest, the way
    /// browsing, search and hashtags do before any recommender exists.
    pub fn log(&mut self, cfg: &WorldConfig) -> Vec<Watch> {
        if cfg.style == LogStyle::Realistic {
            return realistic::log(self, cfg);
        }
        let weights: Vec<Vec<f32>> = self
            .users
            .iter()
            .map(|u| {
                self.videos
                    .iter()
                    .map(|v| v.popularity * (0.2 + 3.0 * u.interests[v.topic]))
                    .collect()
            })
            .collect();
        let mut events = Vec::new();
        for (ui, w) in weights.iter().enumerate() {
            let n = self
                .rng
                .random_range(cfg.events_per_user.0..=cfg.events_per_user.1);
            let total: f32 = w.iter().sum();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..n {
                let mut x = self.rng.random::<f32>() * total;
                let mut vi = 0;
                for (i, wi) in w.iter().enumerate() {
                    x -= wi;
                    if x <= 0.0 {
                        vi = i;
                        break;
                    }
                }
                if !seen.insert(vi) {
                    continue;
                }
                let ts = self.start + self.rng.random_range(0..cfg.days * 86_400);
                let ev = self.watch(ui, vi, ts);
                events.push(ev);
            }
        }
        events.sort_by_key(|e| e.ts);
        events
    }

    pub fn video_index(&self, id: &str) -> Option<usize> {
        id.strip_prefix('v')
            .and_then(|n| n.parse().ok())
            .filter(|&i: &usize| i < self.videos.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_interest_completes_more_often() {
        let cfg = WorldConfig {
            users: 50,
            videos: 300,
            creators: 40,
            ..WorldConfig::default()
        };
        let mut world = World::generate(&cfg);
        let (mut on, mut on_n, mut off, mut off_n) = (0.0, 0, 0.0, 0);
        for u in 0..world.users.len() {
            for v in 0..world.videos.len() {
                let interest = world.users[u].interests[world.videos[v].topic];
                let c = world.watch(u, v, EPOCH).completion();
                if interest > 0.6 {
                    on += c;
                    on_n += 1;
                } else if interest < 0.2 {
                    off += c;
                    off_n += 1;
                }
            }
        }
        let (on, off) = (on / on_n as f32, off / off_n as f32);
        assert!(on > off + 0.3, "on-topic {on} vs off-topic {off}");
    }

    #[test]
    fn the_log_is_chronological_and_deterministic() {
        let cfg = WorldConfig {
            users: 20,
            videos: 100,
            creators: 10,
            ..WorldConfig::default()
        };
        let a = World::generate(&cfg).log(&cfg);
        let b = World::generate(&cfg).log(&cfg);
        assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.video == y.video && x.watch_ms == y.watch_ms));
    }
}
