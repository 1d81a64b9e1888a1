//! Every string the pages show, in Korean (the default) and English (when
//! the browser prefers it), in one place.

use poem::Request;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    /// The best of Korean and English for `Accept-Language`, Korean unless
    /// English is preferred.
    pub fn from_request(req: &Request) -> Self {
        let header = req.header("accept-language").unwrap_or("");
        let mut best = (Lang::Ko, 0.0_f32);
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else if tag == "ko" || tag.starts_with("ko-") {
                Lang::Ko
            } else {
                continue;
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    pub fn text(self) -> &'static Text {
        match self {
            Lang::Ko => &KO,
            Lang::En => &EN,
        }
    }
}

/// The strings of one language. `{}` in a field is replaced by a number.
pub struct Text {
    pub lang: &'static str,
    pub site: &'static str,
    pub coupons: &'static str,
    pub my_coupons: &'static str,
    pub login: &'static str,
    pub logout: &'static str,
    pub signup: &'static str,
    pub email: &'static str,
    pub name: &'static str,
    pub password: &'static str,
    pub no_coupons: &'static str,
    pub remaining: &'static str,
    pub window: &'static str,
    pub claim: &'static str,
    pub login_to_claim: &'static str,
    pub status_scheduled: &'static str,
    pub status_active: &'static str,
    pub status_sold_out: &'static str,
    pub status_expired: &'static str,
    pub err_sold_out: &'static str,
    pub err_already_issued: &'static str,
    pub err_daily_limit: &'static str,
    pub err_not_active: &'static str,
    pub err_not_found: &'static str,
    pub err_invalid_credentials: &'static str,
    pub err_email_taken: &'static str,
    pub err_email: &'static str,
    pub err_name: &'static str,
    pub err_password: &'static str,
    pub err_generic: &'static str,
    pub err_form_expired: &'static str,
    pub waiting_title: &'static str,
    pub your_position: &'static str,
    pub eta: &'static str,
    pub seconds: &'static str,
    pub progress: &'static str,
    pub chance: &'static str,
    pub chance_good: &'static str,
    pub admitted: &'static str,
    pub issued_title: &'static str,
    pub issued_body: &'static str,
    pub rejected_title: &'static str,
    pub reason_sold_out: &'static str,
    pub reason_already_issued: &'static str,
    pub reason_daily_limit: &'static str,
    pub reason_expired: &'static str,
    pub keep_open: &'static str,
    pub back: &'static str,
    pub not_found_title: &'static str,
    pub not_found_body: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_body: &'static str,
    pub err_list_unavailable: &'static str,
    pub have_account: &'static str,
    pub no_account: &'static str,
    pub issued_at: &'static str,
}

pub static KO: Text = Text {
    lang: "ko",
    site: "선착순 쿠폰",
    coupons: "쿠폰",
    my_coupons: "내 쿠폰",
    login: "로그인",
    logout: "로그아웃",
    signup: "회원가입",
    email: "이메일",
    name: "이름",
    password: "비밀번호",
    no_coupons: "지금은 쿠폰이 없습니다.",
    remaining: "남은 수량",
    window: "사용 기간",
    claim: "쿠폰 받기",
    login_to_claim: "로그인하고 쿠폰 받기",
    status_scheduled: "오픈 예정",
    status_active: "진행 중",
    status_sold_out: "매진",
    status_expired: "종료",
    err_sold_out: "쿠폰이 모두 소진되었습니다.",
    err_already_issued: "이미 받은 쿠폰입니다.",
    err_daily_limit: "오늘 받을 수 있는 쿠폰 수를 모두 채웠습니다.",
    err_not_active: "지금은 받을 수 없는 쿠폰입니다.",
    err_not_found: "쿠폰을 찾을 수 없습니다.",
    err_invalid_credentials: "이메일 또는 비밀번호가 올바르지 않습니다.",
    err_email_taken: "이미 가입된 이메일입니다.",
    err_email: "올바른 이메일 주소를 입력하세요 (100자 이하).",
    err_name: "이름은 1~50자로 입력하세요.",
    err_password: "비밀번호는 8~128자로 입력하세요.",
    err_generic: "잠시 후 다시 시도해 주세요.",
    err_form_expired: "페이지가 오래되어 요청을 처리하지 않았습니다. 다시 시도해 주세요.",
    waiting_title: "대기 중입니다",
    your_position: "내 순서",
    eta: "예상 대기 시간",
    seconds: "초",
    progress: "진행률",
    chance: "받을 가능성",
    chance_good: "남은 쿠폰이 내 순서보다 많습니다.",
    admitted: "차례가 되었습니다. 쿠폰을 발급하고 있습니다…",
    issued_title: "쿠폰을 받았습니다!",
    issued_body: "내 쿠폰에서 확인할 수 있습니다.",
    rejected_title: "쿠폰을 받지 못했습니다",
    reason_sold_out: "쿠폰이 모두 소진되었습니다.",
    reason_already_issued: "이미 받은 쿠폰입니다.",
    reason_daily_limit: "오늘 받을 수 있는 쿠폰 수를 모두 채웠습니다.",
    reason_expired: "이벤트가 종료되었습니다.",
    keep_open: "이 페이지를 열어 두세요. 새로고침해도 순서는 그대로입니다.",
    back: "쿠폰 목록으로",
    not_found_title: "찾을 수 없습니다",
    not_found_body: "주소가 올바른지 확인해 주세요.",
    unavailable_title: "잠시만 기다려 주세요",
    unavailable_body:
        "지금은 티켓을 불러올 수 없습니다. 이 페이지가 몇 초 뒤에 스스로 다시 시도합니다.",
    err_list_unavailable: "지금은 목록을 불러올 수 없습니다. 잠시 후 다시 시도해 주세요.",
    have_account: "이미 계정이 있나요?",
    no_account: "계정이 없나요?",
    issued_at: "발급 시각",
};

pub static EN: Text = Text {
    lang: "en",
    site: "First-come coupons",
    coupons: "Coupons",
    my_coupons: "My coupons",
    login: "Log in",
    logout: "Log out",
    signup: "Sign up",
    email: "Email",
    name: "Name",
    password: "Password",
    no_coupons: "There are no coupons right now.",
    remaining: "Left",
    window: "Valid",
    claim: "Get coupon",
    login_to_claim: "Log in to get it",
    status_scheduled: "Opens soon",
    status_active: "Open",
    status_sold_out: "Sold out",
    status_expired: "Ended",
    err_sold_out: "All coupons have been handed out.",
    err_already_issued: "You have this coupon already.",
    err_daily_limit: "You have reached today's limit of coupons.",
    err_not_active: "This coupon cannot be claimed now.",
    err_not_found: "There is no such coupon.",
    err_invalid_credentials: "The email or password is wrong.",
    err_email_taken: "An account with this email exists already.",
    err_email: "Enter a valid email address (at most 100 characters).",
    err_name: "Enter a name of 1 to 50 characters.",
    err_password: "Use a password of 8 to 128 characters.",
    err_generic: "Something went wrong. Please try again shortly.",
    err_form_expired: "This page had expired, so nothing was done. Please try again.",
    waiting_title: "You are in line",
    your_position: "Your place",
    eta: "Estimated wait",
    seconds: "s",
    progress: "Progress",
    chance: "Chance",
    chance_good: "More coupons are left than people ahead of you.",
    admitted: "It's your turn. Issuing your coupon…",
    issued_title: "You got the coupon!",
    issued_body: "Find it under My coupons.",
    rejected_title: "No coupon this time",
    reason_sold_out: "All coupons have been handed out.",
    reason_already_issued: "You have this coupon already.",
    reason_daily_limit: "You have reached today's limit of coupons.",
    reason_expired: "The event has ended.",
    keep_open: "Keep this page open. Refreshing keeps your place.",
    back: "Back to coupons",
    not_found_title: "Not found",
    not_found_body: "Please check the address.",
    unavailable_title: "One moment, please",
    unavailable_body:
        "Your ticket cannot be read just now. This page will try again by itself in a few seconds.",
    err_list_unavailable: "The list cannot be loaded just now. Please try again shortly.",
    have_account: "Have an account?",
    no_account: "No account yet?",
    issued_at: "Issued at",
};

impl Text {
    pub fn status(&self, status: &str) -> &'static str {
        match status {
            "scheduled" => self.status_scheduled,
            "sold_out" => self.status_sold_out,
            "expired" => self.status_expired,
            _ => self.status_active,
        }
    }

    /// The sentence for an error code or rejection reason.
    pub fn reason(&self, code: &str) -> &'static str {
        match code {
            "SOLD_OUT" => self.reason_sold_out,
            "ALREADY_ISSUED" => self.reason_already_issued,
            "DAILY_LIMIT" => self.reason_daily_limit,
            "EXPIRED" => self.reason_expired,
            "NOT_ACTIVE" => self.err_not_active,
            "COUPON_NOT_FOUND" => self.err_not_found,
            _ => self.err_generic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(header: &str) -> Lang {
        Lang::from_request(
            &Request::builder()
                .header("accept-language", header)
                .finish(),
        )
    }

    #[test]
    fn korean_unless_english_is_preferred() {
        assert_eq!(lang(""), Lang::Ko);
        assert_eq!(lang("fr-FR,fr;q=0.9"), Lang::Ko);
        assert_eq!(lang("en-US,en;q=0.9"), Lang::En);
        assert_eq!(lang("ko-KR,ko;q=0.9,en;q=0.8"), Lang::Ko);
        assert_eq!(lang("ko;q=0.5,en;q=0.8"), Lang::En);
    }
}
