"""The fixed vocabulary synthetic users are drawn from: devices, names, places, events, audiences.

Plain data, no logic. Event and screen names include the untidy spellings real apps send
(leading/trailing spaces, inner spaces) so the name normalisation rule has work to do.
"""

from __future__ import annotations

# device_info.platform -> (application_info.os, share of devices, source_info.channel)
PLATFORMS: dict[str, tuple[str, float, str]] = {
    "iOS": ("IOS", 0.38, "native"),
    "Android": ("Android", 0.35, "native"),
    "web": ("MobileWeb", 0.17, "javascript"),
    "alexa": ("Alexa", 0.03, "native"),
    "tvOS": ("TVOS", 0.025, "native"),
    "roku": ("Roku", 0.02, "native"),
    "fire_tv": ("FireTV", 0.015, "native"),
    "smart_tv": ("SmartTV", 0.01, "native"),
}

# platform -> (manufacturer, models, os versions)
DEVICES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "iOS": (
        "Apple",
        ("iPhone15,2", "iPhone14,5", "iPhone16,1", "iPhone13,2", "iPad13,4"),
        ("17.4", "17.5.1", "18.0", "18.1"),
    ),
    "Android": (
        "Google",
        ("Pixel 8", "Pixel 7a", "SM-S918B", "SM-A546E", "moto g power (2023)"),
        ("13", "14", "15"),
    ),
    "web": ("", ("Chrome", "Safari", "Firefox", "Edge"), ("124.0", "17.4", "125.0")),
    "alexa": ("Amazon", ("Echo Dot (5th Gen)", "Echo Show 8"), ("8.0",)),
    "tvOS": ("Apple", ("AppleTV11,1", "AppleTV6,2"), ("17.4", "18.0")),
    "roku": ("Roku", ("Roku Ultra", "Roku Express 4K"), ("12.5", "13.0")),
    "fire_tv": ("Amazon", ("AFTKA", "AFTMM"), ("7.6", "8.1")),
    "smart_tv": ("Samsung", ("QN90C", "UN43TU7000"), ("Tizen 7.0",)),
}

USER_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
)

FIRST_NAMES = (
    "Jane", "John", "Maria", "Wei", "Aisha", "Lucas", "Sofia", "Noah", "Emma", "Liam", "Olivia", "Mateo",
    "Yuki", "Priya", "Omar", "Chloe", "Ethan", "Ana", "Kofi", "Ingrid", "Diego", "Fatima", "Hugo", "Mei",
)
LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Khan", "Müller", "Rossi", "Silva", "Kim", "Nguyen", "Okafor", "Johansson",
    "Dubois", "Patel", "Novak", "Tanaka", "O'Brien", "Lopez", "Schmidt", "Haddad", "Kowalski",
)
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "example.co.uk")

# (city, state, zip, country)
PLACES = (
    ("New York", "NY", "10001", "US"),
    ("San Francisco", "CA", "94103", "US"),
    ("Austin", "TX", "73301", "US"),
    ("Chicago", "IL", "60601", "US"),
    ("London", "", "EC1A 1BB", "GB"),
    ("Berlin", "BE", "10115", "DE"),
    ("Paris", "", "75001", "FR"),
    ("Toronto", "ON", "M5H 2N2", "CA"),
    ("Sydney", "NSW", "2000", "AU"),
    ("São Paulo", "SP", "01000-000", "BR"),
)

# Reserved attribute spellings: canonical, mParticle's own lower-case example, and others
# seen in the wild. A user keeps one spelling style throughout.
RESERVED = ("$FirstName", "$LastName", "$City", "$State", "$Zip", "$Country", "$Gender", "$Age", "$Mobile")
SPELLING_STYLES = (("canonical", 0.5), ("lower", 0.3), ("upper", 0.1), ("title", 0.1))

PLAN_TIERS = ("free", "basic", "pro", "enterprise")
CATEGORIES = ("shoes", "outdoor", "electronics", "books", "kitchen", "toys", "beauty", "garden")
THEMES = ("light", "dark", "system")

# (event name as the app logs it, custom_event_type, attribute kind)
CUSTOM_EVENTS = (
    ("  Add to Cart ", "transaction", "product", 12),
    ("Add to Cart", "transaction", "product", 6),
    ("Product Viewed", "navigation", "product", 16),
    ("Search", "search", "search", 10),
    ("Search ", "search", "search", 3),
    (" Checkout Started", "transaction", "cart", 5),
    ("Purchase Completed  ", "transaction", "order", 3),
    ("Video  Played", "media", "video", 5),
    ("Sign Up", "user_content", "none", 2),
    ("Share Item", "social", "product", 3),
    ("level_complete", "other", "level", 4),
    ("Push Settings Changed", "user_preference", "pref", 2),
    ("Store Located", "location", "place", 2),
    ("Wishlist Add", "user_content", "product", 4),
)

SCREENS = (
    ("Home", 30), ("Product Detail", 20), ("Search Results", 12), (" Cart", 8), ("Checkout", 5),
    ("Account Settings", 4), ("Order History", 4), ("Onboarding Step 1", 3), ("Player", 6),
)

PRODUCTS = (
    ("SKU-1001", "Trail Runner 2", "shoes", "89.99"),
    ("SKU-1002", "Down Jacket", "outdoor", "199.00"),
    ("SKU-1003", "Noise Cancelling Headphones", "electronics", "249.50"),
    ("SKU-1004", "Cast Iron Skillet", "kitchen", "39.95"),
    ("SKU-1005", "Paperback Thriller", "books", "12.99"),
    ("SKU-1006", "Building Blocks Set", "toys", "59.00"),
    ("SKU-1007", "Vitamin C Serum", "beauty", "24.00"),
    ("SKU-1008", "Garden Hose 25m", "garden", "34.75"),
)

SEARCH_TERMS = ("running shoes", "headphones", "gift ideas", "skillet", "jacket sale", "lego", "serum")
VIDEOS = ("Spring Collection", "How to Lace Shoes", "Trail Highlights", "Kitchen Basics Ep. 3")

# audience id -> audience name (ids in the style of mParticle's audience docs)
AUDIENCES = {
    11034: "High Value Customers",
    11036: "Cart Abandoners",
    11040: "Lapsed Users 30d",
    11052: "iOS Power Users",
    11061: "Newsletter Subscribers",
    11077: "Trial Ending Soon",
    11083: "Push Enabled",
}

APPLICATION_NAME = "Acme Shop"
APPLICATION_PACKAGE = "com.example.acmeshop"
ACCOUNT_ID = 123456
