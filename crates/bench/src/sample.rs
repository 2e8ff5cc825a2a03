//! A realistic sample of a sales team's activity: tenants, companies, salespeople, deals,
//! and activities with Japanese memos, drawn from a seeded generator so runs repeat.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tsunagu_domain::{ActionType, ActivityLog};

pub const TENANTS: [&str; 2] = ["tenant-musubu", "tenant-tsunagu"];

const COMPANY_WORDS: [&str; 16] = [
    "山田",
    "東海",
    "北斗",
    "日本橋",
    "さくら",
    "青葉",
    "みらい",
    "大和",
    "富士",
    "光",
    "和泉",
    "浪速",
    "博多",
    "札幌",
    "湘南",
    "瀬戸内",
];
const COMPANY_KINDS: [&str; 8] = [
    "商事",
    "製作所",
    "システムズ",
    "物流",
    "建設",
    "食品",
    "不動産",
    "ソリューションズ",
];
pub const USERS: [&str; 12] = [
    "sato",
    "suzuki",
    "takahashi",
    "tanaka",
    "ito",
    "watanabe",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
    "yoshida",
    "yamada",
];
pub const TAGS: [&str; 8] = [
    "重点",
    "新規",
    "既存",
    "決裁者接触",
    "要フォロー",
    "展示会",
    "紹介",
    "競合あり",
];
const RESULTS: [&str; 6] = [
    "appointment",
    "no_answer",
    "callback",
    "rejected",
    "proposal_sent",
    "contracted",
];
const OPENINGS: [&str; 8] = [
    "先方の部長と",
    "担当者様と",
    "決裁者の社長と",
    "情報システム部の課長と",
    "購買担当の方と",
    "前回の担当者と",
    "新任のマネージャーと",
    "受付経由で",
];
const TOPICS: [&str; 10] = [
    "導入スケジュールについて協議",
    "見積もりの再提示を依頼された",
    "競合製品との比較資料を共有",
    "来週訪問のアポ獲得",
    "予算確保の見込みを確認",
    "トライアル環境の延長を相談",
    "契約条件の最終確認",
    "課題ヒアリングを実施",
    "オンラインでデモを実施",
    "請求書払いの可否を確認",
];
const CLOSINGS: [&str; 6] = [
    "次回は提案書を持参する。",
    "資料を本日中に送付。",
    "社内稟議に回すとのこと。",
    "来月に再度連絡する。",
    "ｷｬﾝﾍﾟｰﾝ価格での提示を検討。",
    "特に懸念点はなし。",
];

/// A deal of the sample and who owns it.
#[derive(Debug, Clone)]
pub struct Deal {
    pub id: String,
    pub tenant_id: String,
    pub company_id: String,
    pub company_name: String,
    pub owner: String,
}

pub struct Sample {
    rng: StdRng,
    pub deals: Vec<Deal>,
    next_activity: u64,
    now: DateTime<Utc>,
}

impl Sample {
    pub fn new(seed: u64, deals: u32, now: DateTime<Utc>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let companies = (deals / 3).max(1);
        let deals = (0..deals)
            .map(|d| {
                let c = rng.random_range(0..companies);
                let name = format!(
                    "株式会社{}{}",
                    COMPANY_WORDS[c as usize % COMPANY_WORDS.len()],
                    COMPANY_KINDS[(c as usize / COMPANY_WORDS.len()) % COMPANY_KINDS.len()]
                );
                Deal {
                    id: format!("deal-{d:05}"),
                    tenant_id: TENANTS[(c % 2) as usize].to_string(),
                    company_id: format!("company-{c:04}"),
                    company_name: name,
                    owner: USERS[rng.random_range(0..USERS.len())].to_string(),
                }
            })
            .collect();
        Self {
            rng,
            deals,
            next_activity: 0,
            now,
        }
    }

    /// A new activity on a random deal, in the last 90 days.
    pub fn activity(&mut self) -> ActivityLog {
        let deal = self.deals[self.rng.random_range(0..self.deals.len())].clone();
        let ago = Duration::seconds(self.rng.random_range(0..90 * 24 * 3600));
        self.activity_on(&deal, self.now - ago)
    }

    /// A new activity on `deal` at `at`.
    pub fn activity_on(&mut self, deal: &Deal, at: DateTime<Utc>) -> ActivityLog {
        self.next_activity += 1;
        let rng = &mut self.rng;
        let action = match rng.random_range(0..100) {
            0..=39 => ActionType::Call,
            40..=64 => ActionType::Email,
            65..=79 => ActionType::Visit,
            80..=91 => ActionType::OnlineMeeting,
            92..=95 => ActionType::Letter,
            _ => ActionType::Other,
        };
        let user = if rng.random_bool(0.8) {
            deal.owner.clone()
        } else {
            USERS[rng.random_range(0..USERS.len())].to_string()
        };
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..rng.random_range(0..3) {
            let tag = TAGS[rng.random_range(0..TAGS.len())].to_string();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let memo = format!(
            "{}{}{}。{}",
            deal.company_name,
            OPENINGS[rng.random_range(0..OPENINGS.len())],
            TOPICS[rng.random_range(0..TOPICS.len())],
            CLOSINGS[rng.random_range(0..CLOSINGS.len())]
        );
        ActivityLog {
            id: format!("act-{:08}", self.next_activity),
            tenant_id: deal.tenant_id.clone(),
            deal_id: deal.id.clone(),
            company_id: deal.company_id.clone(),
            user_id: user,
            action,
            result: rng
                .random_bool(0.85)
                .then(|| RESULTS[rng.random_range(0..RESULTS.len())].to_string()),
            occurred_at: at,
            memo,
            tags,
            created_at: at,
            updated_at: at,
        }
    }

    /// The same activity edited: another result and an appended note.
    pub fn edit(&mut self, mut activity: ActivityLog) -> ActivityLog {
        activity.result = Some(RESULTS[self.rng.random_range(0..RESULTS.len())].to_string());
        activity.memo.push_str(" 追記:");
        activity
            .memo
            .push_str(TOPICS[self.rng.random_range(0..TOPICS.len())]);
        activity.updated_at = activity.updated_at.max(self.now);
        activity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_activity_is_valid() {
        let now = Utc::now();
        let mut sample = Sample::new(1, 50, now);
        for _ in 0..500 {
            let a = sample.activity();
            assert_eq!(a.validate(now), Ok(()));
            let edited = sample.edit(a);
            assert_eq!(edited.validate(now), Ok(()));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_sample() {
        let now = Utc::now();
        let a = Sample::new(9, 20, now).activity();
        let b = Sample::new(9, 20, now).activity();
        assert_eq!(a, b);
    }
}
