"""Word lists the linker's rules read. Kept apart so that the rules in linker.py read as sentences.

They are general English and market vocabulary, not lists of company names: which names are
ordinary words is decided per directory (names.is_common_word, curated overrides).
"""
from __future__ import annotations


def _forms(*stems: str) -> frozenset[str]:
    """Verb stems with their -s/-es, -ed/-d and -ing forms ('rise' -> rises, rised, rising...)."""
    out = set()
    for s in stems:
        out.update({s, s + "s", s + "es", s + "ed", s + "d", s + "ing"})
        if s.endswith("e"):
            out.add(s[:-1] + "ing")
        if s.endswith("y"):
            out.update({s[:-1] + "ies", s[:-1] + "ied"})
        if len(s) >= 3 and s[-1] not in "aeiouwy" and s[-2] in "aeiou" and s[-3] not in "aeiou":
            out.update({s + s[-1] + "ed", s + s[-1] + "ing"})
    return frozenset(out)


# Verbs that, right after a name, make it the subject of a market or corporate event.
MARKET_VERBS = _forms(
    "rise", "fall", "jump", "slide", "drop", "gain", "climb", "sink", "soar", "plunge", "tumble",
    "surge", "rally", "slump", "dip", "rebound", "beat", "miss", "top", "report", "post", "raise",
    "cut", "lower", "boost", "announce", "unveil", "launch", "recall", "sue", "acquire", "buy", "sell",
    "agree", "plan", "expect", "warn", "file", "hire", "lay", "appoint", "settle", "win", "invest",
    "partner", "halt", "delay", "offer", "reach", "seek", "ship", "hike", "slash", "trim", "lead", "lag",
    "crash", "skyrocket", "spike", "sell", "dump", "outperform", "underperform", "guide", "forecast",
    "close", "open", "debut", "list", "delist", "merge", "spin", "split", "pay", "owe", "fine", "probe",
    "face", "fight", "lose", "add", "shed", "explore", "consider", "name", "tap", "pick", "replace",
    "confirm", "deny", "reject", "accept", "approve", "sign", "expand", "exit", "enter", "build",
    "release", "introduce", "roll", "scrap", "suspend", "resume", "restructure", "reorganize",
    "move", "need", "keep", "end", "hit", "struggle", "push", "join", "go", "see", "select", "want",
    "declare", "commence", "ink", "notch", "update", "remain", "stop", "tell", "ask", "urge", "sign",
    "unveil", "bet", "double", "triple", "halve", "slip", "edge", "extend", "pull", "reveal", "tout",
    "bounce", "outline", "fail", "come", "make", "take", "get", "give", "turn", "try", "drive", "set",
    "aim", "slice", "look", "prepare", "shift", "eye", "weigh", "mull", "woo", "court", "brace", "vow",
    "pledge", "ditch", "axe", "present", "achieve", "win", "secure", "land", "unveil", "tumble", "grow",
    "near", "shrink", "post", "top", "beat", "surpass", "overtake", "trail", "target", "challenge", "sue",
) | frozenset({"rose", "fell", "slid", "sank", "soared", "won", "lost", "bought", "sold", "paid", "led",
               "sought", "met", "beats", "tops", "misses", "ups"})

# Of those, verbs of movement: also said of things that are not companies ('Phoenix rises from the
# ashes'), so they corroborate a name only with a figure in the text ('Ford rises 3%').
MOVE_VERBS = _forms(
    "rise", "fall", "jump", "slide", "drop", "gain", "climb", "sink", "soar", "plunge", "tumble", "surge",
    "rally", "slump", "dip", "rebound", "crash", "skyrocket", "spike", "bounce", "slip", "edge", "double",
    "triple", "halve", "grow", "shrink", "come", "go", "turn", "move", "hit", "lead", "lag", "top",
) | frozenset({"rose", "fell", "slid", "sank", "soared", "led", "went", "came", "tops"})

# Nouns and phrases of market text: one in the same sentence corroborates an ambiguous name.
CUE_WORDS = frozenset({
    "shares", "share", "stock", "stocks", "equity", "earnings", "revenue", "revenues", "sales", "profit",
    "profits", "loss", "losses", "eps", "guidance", "outlook", "forecast", "forecasts", "dividend",
    "dividends", "buyback", "buybacks", "ipo", "quarter", "quarterly", "q1", "q2", "q3", "q4", "fy",
    "ceo", "cfo", "coo", "chairman", "executive", "executives", "analyst", "analysts", "downgrade",
    "downgrades", "downgraded", "upgrade", "upgrades", "upgraded", "rating", "ratings", "valuation",
    "investors", "investor", "shareholders", "shareholder", "stockholders", "stake", "acquisition",
    "merger", "takeover", "bid", "deal", "layoffs", "nasdaq", "nyse", "premarket", "pre-market",
    "after-hours", "trading", "traded", "selloff", "sell-off", "overweight", "underweight", "outperform",
    "underperform", "margin", "margins", "results", "billion", "million", "bn", "mln", "antitrust",
    "lawsuit", "regulators", "subscribers", "deliveries", "shipments", "users", "customers", "stores",
    "bonds", "debt", "notes", "filing", "sec", "ftc", "doj", "eu", "company", "firm", "maker", "giant",
    "retailer", "bank", "lender", "insurer", "carrier", "automaker", "chipmaker", "airline", "brand",
    "rival", "rivals", "peers", "competitor", "iphone", "products", "unit", "division", "subsidiary",
    "%", "percent", "market", "wall", "index", "s&p", "dow", "calls", "puts", "options", "short",
    "bullish", "bearish", "rally", "plunge", "surge", "slump", "gains", "recall", "strike", "workers",
    "employees", "jobs", "exec", "execs", "banks", "lenders", "insurers", "automakers", "chipmakers",
    "airlines", "retailers", "companies", "firms", "plant", "factory", "production", "manufacturing",
    "supply", "demand", "pricing", "price", "prices", "offering", "contract", "order", "orders",
    "report", "reports", "reuters", "bloomberg", "cnbc", "hiring", "spending", "buy", "sell", "hold",
    "bull", "bear", "undervalued", "overvalued", "cheap", "expensive", "fda", "approval", "drug",
    "investing", "finance", "business", "economy", "markets", "stockmarket", "portfolio", "quarter's",
    "agreement", "partnership", "catalyst", "catalysts", "charge", "writedown", "writeoff", "writeoffs",
    "impairment", "rivals", "peers", "estimates", "estimate", "expectations", "consensus", "forecasts",
    "funds", "funding", "startup", "venture", "acquire", "acquires", "acquired", "buyout", "stock's",
})

# Legal words right after a name: 'Gap Inc', 'Shell plc'.
LEGAL_NEXT = frozenset({"inc", "inc.", "corp", "corp.", "co", "co.", "ltd", "ltd.", "plc", "group", "holdings",
                        "corporation", "incorporated", "n.v.", "ag", "se", "sa", "llc"})
# Spellings of one legal form, to tell 'Employers Holdings' (its own) from 'Orion Group' (another's)
LEGAL_FORM = {"inc.": "inc", "incorporated": "inc", "corp.": "corp", "corporation": "corp", "co.": "co",
              "company": "co", "ltd.": "ltd", "limited": "ltd", "holding": "holdings", "s.a.": "sa",
              "n.v.": "nv", "plc.": "plc"}
# A capitalised word after a name that makes the two a place: 'Amazon River', 'Ashtead Road', 'Delta
# County'. ('Falls' is left out: 'Ashtead Falls 3%'; 'Park' and 'Square' too: Apple Park is Apple's.)
PLACE_NEXT = frozenset({
    "river", "road", "street", "avenue", "lane", "lake", "mountain", "mountains", "valley", "island",
    "islands", "bay", "forest", "rainforest", "basin", "sea", "ocean", "county", "creek", "canyon", "desert",
    "hills", "heights",
})
# A capitalised word after a name that makes it another company's name, unless the company's own name
# has the word: 'Hexagon Resources' is not Hexagon AB, 'Charles River Associates' not Charles River
# Laboratories. (Subsidiary words such as Bank, Energy or Group are not here: 'Tesco Bank' is Tesco's.)
OTHER_COMPANY_NEXT = frozenset({
    "associates", "resources", "minerals", "mining", "metals", "composites", "ventures", "acquisition",
    "bancorp", "bancshares", "royalty", "exploration", "gold", "lithium", "uranium",
})

# Words after a name that keep it a subject or a head ('Apple said', 'Gap and'), as opposed to a
# modifier of a common noun ('Apple pie', 'Visa applications', 'Shell company').
FUNCTION_WORDS = frozenset({
    "and", "or", "but", "nor", "to", "of", "in", "on", "at", "for", "with", "from", "by", "as", "into",
    "is", "was", "are", "were", "be", "been", "has", "have", "had", "will", "would", "could", "can",
    "may", "might", "should", "must", "shall", "does", "did", "do", "said", "says", "say", "after",
    "before", "amid", "over", "under", "vs", "versus", "plus", "than", "that", "which", "who", "whose",
    "its", "it", "also", "just", "now", "today", "yesterday", "tomorrow", "this", "next", "last",
    "again", "still", "not", "n't", "isn't", "wasn't", "won't", "can't", "doesn't", "didn't", "hasn't",
    "reportedly", "officially", "finally", "quickly", "sharply", "slightly", "more", "less", "up",
    "down", "off", "out", "back", "against", "about", "above", "below", "near", "since", "until",
    "while", "where", "when", "if", "so", "too", "very", "here", "there", "all", "both", "each",
    "vs.", "via", "per", "amid", "ahead", "toward", "towards", "through", "despite", "because",
    "inc", "corp", "ltd", "plc", "group", "holdings", "corporation", "among", "within", "without",
    "like", "unlike", "between",
})

DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "my", "your", "our", "their",
                         "his", "her", "its", "every", "no", "some", "any", "another", "each", "either",
                         "neither", "such", "what", "which", "whose"})

# Exchanges whose 'EXCH: TICK' form names a listing outright.
# Exchange codes written before a ticker ('NYSE: GM', 'Hexagon AB (STO:HEXA B)'): the code is the exchange,
# never a company named like it (Nasdaq Inc, Sto SE). The value is where the ticker after it is looked up:
# '' as written (a US listing), a suffix for a home-market listing the directory keeps ('LON:TSCO' is
# TSCO.L, Tesco, not Tractor Supply's TSCO), None where the directory keeps none of that market's codes.
EXCHANGE_PREFIXES = {
    "NYSE": "", "NASDAQ": "", "Nasdaq": "", "AMEX": "", "NYSEARCA": "", "NYSE American": "", "OTC": "",
    "OTCMKTS": "", "BATS": "", "CBOE": "", "ARCA": "",
    "LSE": ".L", "LON": ".L", "ETR": ".DE", "XETRA": ".DE", "EPA": ".PA", "AMS": ".AS", "TYO": ".T",
    "STO": ".ST", "HEL": ".HE", "CPH": ".CO", "BME": ".MC", "SWX": ".SW", "SIX": ".SW", "EBR": ".BR",
    "FRA": None, "TSX": None, "TSXV": None, "TSE": None, "ASX": None, "NZSE": None, "OB": None, "BIT": None,
    "ELI": None, "WSE": None, "HKG": None, "SEHK": None, "SHSE": None, "SZSE": None, "NSE": None, "BSE": None,
    "KRX": None, "KOSDAQ": None, "TPE": None, "SGX": None, "JSE": None, "BMV": None, "IST": None,
    "TASE": None, "VIE": None, "ISE": None, "CNSX": None, "NEOE": None,
}

# Nouns that follow a company name as its own attribute ('Apple shares', 'Target CEO'), unlike the
# common nouns an ordinary word modifies ('apple pie', 'target price', 'shell company').
NEXT_NOUNS = frozenset({
    "shares", "share", "stock", "stocks", "earnings", "revenue", "revenues", "sales", "profit", "profits",
    "ceo", "cfo", "coo", "chief", "boss", "chairman", "executives", "executive", "board", "founder",
    "investors", "shareholders", "stockholders", "stake", "deal", "deals", "results", "guidance", "outlook",
    "forecast", "dividend", "dividends", "buyback", "ipo", "bid", "acquisition", "merger", "takeover",
    "layoffs", "employees", "workers", "staff", "stores", "customers", "users", "subscribers", "deliveries",
    "shipments", "analysts", "bonds", "debt", "options", "calls", "puts", "premarket", "unit", "division",
    "subsidiary", "spokesperson", "spokesman", "spokeswoman", "lawsuit", "probe", "valuation", "rating",
    "downgrade", "upgrade", "q1", "q2", "q3", "q4", "eps", "margins", "margin", "loss", "losses",
    "exec", "execs", "executives", "engineers", "union", "plant", "factory", "offering", "sales",
    "rivals", "rival", "peers", "likely", "unlikely", "stake", "holders", "bulls", "bears",
    "supplier", "suppliers", "partner", "partners", "owner", "owners", "parent", "spinoff",
})

# After a hyphen, words that tie something to a company rather than make a compound noun.
AFFILIATION = frozenset({"backed", "owned", "led", "based", "made", "related", "linked", "involved",
                         "controlled", "funded", "listed", "branded", "bound"})

# Ordinary-word names that are also verbs: after 'to' and before an object they are the verb ('EU Set To
# Target 15% Cut', 'plans to block the deal'), not the company ('sells its unit to Target for $1 billion').
VERB_NAMES = frozenset({"target", "block", "chase", "square", "shell", "snap", "match", "zoom", "ford"})
# Words before a verb's bare form that make such a name the verb in the same way ('Job Cuts That May
# Target 20000 Workers', 'regulators could block the merger').
VERB_BEFORE = frozenset({"to", "may", "might", "will", "would", "could", "can", "should", "must", "shall",
                         "cannot", "won't", "wouldn't", "couldn't", "can't", "shouldn't", "mustn't"})

# Common given names that are not also ordinary words (no Will, May, Mark, Bill, Grant, Chase, Frank,
# Rose, Hope, Jack, Guy, Ray or Dean): one right before a name that is also a word or a surname makes
# the two a person, in Headline Case too ('CEO Robert Ford on Q2 Results', 'Tom Ford'). Executives'
# first names are the ones news text writes most.
GIVEN_NAMES = frozenset("""
aaron abigail adam alan albert alex alexander alexandra alice alicia allison amanda amy andrea andrew
andy angela ann anna anne anthony antonio arthur ashley barbara benjamin betty beverly brandon brenda
brian bruce bryan carl carlos carol carolyn catherine cathie charles cheryl chris christian christina
christine christopher cynthia daniel danielle david debra deborah denise dennis diana diane donald
donna doris dorothy douglas dylan edward elizabeth elon emily emma eric erik eugene evelyn gabriel
gary george gerald gina ginni gloria gregory hannah harold heather helen henry howard indra
jacob jacqueline james jamie jane janet janice jason jean jeff jeffrey jennifer jeremy jerome jerry
jessica jim joan joe john jonathan jose joseph joshua joyce juan judith julia julie justin
karen katherine kathleen kathryn keith kelly kenneth kevin kimberly kyle larry laura lauren
lawrence linda lisa lloyd louis lucas madison margaret maria marie marissa martha mary matthew megan
melissa michael michelle mike nancy natalie nathan nicholas nicole noah olivia pamela patricia
patrick paul peter philip rachel ralph randy raymond rebecca richard robert roger ronald russell
ryan samantha samuel sandra sara sarah satya scott sean sharon sheryl shirley stephanie stephen
steve steven sundar susan teresa terry thomas tim timothy tom tyler ursula victoria vincent walter
wayne william zachary
""".split())

# Market phrases in which a word that is also a company name is just the word, whatever its case.
FIXED_PHRASES = frozenset({
    "price target", "target price", "price targets", "target prices", "target date", "inflation target",
    "shell company", "shell companies", "shell corporation", "block trade", "block trades", "block sale",
    "gap up", "gap down", "gap higher", "gap lower", "gap fill", "earnings gap", "trade gap", "wealth gap",
    "funding gap", "output gap",
    "visa waiver", "visa fees", "visa rules", "golden visa", "square foot", "square feet", "square footage",
    "delta hedge", "delta hedging", "option delta", "carnival atmosphere", "next quarter", "next year",
    # a target someone sets or misses, not the retailer ('Amazon Misses Revenue Target'); the name's side
    # is always the name as matched ('target'), so only the other word may be plural
    "sales target", "revenue target", "profit target", "earnings target", "growth target", "margin target",
    "emissions target", "climate target", "carbon target", "production target", "output target",
    "delivery target", "savings target", "cost target", "deficit target", "debt target", "spending target",
    "takeover target", "acquisition target", "buyout target", "drug target", "rate target", "return target",
    "capital target", "leverage target", "target range", "target rate", "target market", "target audience",
    "dividend target", "payout target", "yield target", "zero target", "export target", "analyst target",
    "budget target", "fiscal target", "investment target", "volume target",
    "pay gap", "wage gap", "gender gap", "valuation gap", "delta variant", "times square", "town square",
    "work visa", "student visa", "visa applications", "visa restrictions",
})

# US states, full and in AP style: after a name and a comma ('Hershey, Pa.', 'Dover, Delaware') they
# make the name a town (several companies are named after theirs), unless the text names the company
# otherwise (a cashtag, a tag, its ticker). Two-letter postal codes are left out: 'Visa, MA' is
# two companies.
US_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut", "Delaware", "Florida",
    "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas", "Kentucky", "Louisiana", "Maine",
    "Maryland", "Massachusetts", "Michigan", "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska",
    "Nevada", "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas",
    "Utah", "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming", "D.C.",
    "Ala.", "Ariz.", "Ark.", "Calif.", "Colo.", "Conn.", "Del.", "Fla.", "Ga.", "Ill.", "Ind.", "Kan.", "Ky.",
    "La.", "Md.", "Mass.", "Mich.", "Minn.", "Miss.", "Mo.", "Mont.", "Neb.", "Nev.", "N.H.", "N.J.", "N.M.",
    "N.Y.", "N.C.", "N.D.", "Okla.", "Ore.", "Pa.", "R.I.", "S.C.", "S.D.", "Tenn.", "Tex.", "Vt.", "Va.",
    "Wash.", "W.Va.", "Wis.", "Wyo.",
)
