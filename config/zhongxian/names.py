"""Name tables for the Zhong County example: the real 29 townships, and synthetic names for the rest.

The townships and streets (乡镇/街道) are Zhong County's real 29 as the 2021-2025 emergency
plan counts them. Their coordinates are approximate (good enough to move a storm across a map;
not survey data). Villages, groups, sites and people are synthetic but plausible.
"""

from __future__ import annotations

# (id, name, lat, lon, kind) — kind: street 街道 | town 镇 | xiang 乡.  4 + 19 + 6 = 29.
TOWNSHIPS: list[tuple[str, str, float, float, str]] = [
    ("zhongzhou", "忠州街道", 30.300, 108.035, "street"),
    ("baigong", "白公街道", 30.285, 108.070, "street"),
    ("wuyang", "乌杨街道", 30.215, 107.975, "street"),
    ("xinsheng", "新生街道", 30.335, 108.095, "street"),
    ("renjia", "任家镇", 30.385, 108.135, "town"),
    ("yangdu", "洋渡镇", 30.125, 107.880, "town"),
    ("dongxi", "东溪镇", 30.405, 108.020, "town"),
    ("fuxing", "复兴镇", 30.270, 107.915, "town"),
    ("shibao", "石宝镇", 30.420, 108.175, "town"),
    ("ruxi", "汝溪镇", 30.500, 108.050, "town"),
    ("yehe", "野鹤镇", 30.450, 107.950, "town"),
    ("guanba", "官坝镇", 30.505, 107.880, "town"),
    ("shihuang", "石黄镇", 30.350, 107.820, "town"),
    ("maguan", "马灌镇", 30.290, 107.830, "town"),
    ("jinji", "金鸡镇", 30.380, 107.905, "town"),
    ("xinli", "新立镇", 30.275, 108.185, "town"),
    ("shuanggui", "双桂镇", 30.305, 107.705, "town"),
    ("bashan", "拔山镇", 30.220, 107.750, "town"),
    ("huaqiao", "花桥镇", 30.250, 107.625, "town"),
    ("yongfeng", "永丰镇", 30.180, 107.680, "town"),
    ("sanhui", "三汇镇", 30.400, 107.720, "town"),
    ("baishi", "白石镇", 30.460, 107.800, "town"),
    ("huangjin", "黄金镇", 30.180, 108.130, "town"),
    ("shanguang", "善广乡", 30.555, 107.970, "xiang"),
    ("shizi", "石子乡", 30.135, 108.050, "xiang"),
    ("mozi", "磨子土家族乡", 30.100, 108.180, "xiang"),
    ("tujing", "涂井乡", 30.350, 108.230, "xiang"),
    ("jinsheng", "金声乡", 30.230, 108.100, "xiang"),
    ("xingfeng", "兴峰乡", 30.505, 108.125, "xiang"),
]

# Townships with much forest (the plan's new fire ponds go to 石宝, 涂井, 黄金, 马灌, 白石, 善广, 新立,
# 金鸡, 磨子 and the state forest farm): they get the forest blocks and the fire cameras.
FOREST_TOWNSHIPS = ["shibao", "tujing", "huangjin", "maguan", "baishi", "shanguang", "xinli", "jinji", "mozi",
                    "xingfeng", "guanba", "yongfeng"]

VILLAGES: list[tuple[str, str]] = [
    ("longjing", "龙井村"), ("shiqiao", "石桥村"), ("xinhua", "新华村"), ("hongxing", "红星村"), ("gaofeng", "高峰村"),
    ("tianchi", "天池村"), ("changling", "长岭村"), ("qinglong", "青龙村"), ("baiyan", "白岩村"),
    ("huangjue", "黄桷村"), ("baishu", "柏树村"), ("guihua", "桂花村"), ("xinqiao", "新桥村"), ("daping", "大坪村"),
    ("shuanghe", "双河村"), ("jinzhu", "金竹村"), ("liangshui", "凉水村"), ("wuxing", "五星村"),
    ("guangming", "光明村"), ("tuanjie", "团结村"), ("heping", "和平村"), ("yongan", "永安村"), ("zhongba", "中坝村"),
    ("santai", "三台村"), ("shimen", "石门村"), ("shuijing", "水井村"), ("dayan", "大堰村"), ("guanyin", "观音村"),
    ("laolin", "老林村"), ("banzhu", "斑竹村"), ("yangliu", "杨柳村"), ("fengmu", "枫木村"), ("songlin", "松林村"),
    ("tangba", "塘坝村"), ("xiangshui", "响水村"), ("hekou", "河口村"), ("pingshan", "坪山村"), ("huayuan", "花园村"),
    ("huangni", "黄泥村"), ("wenfeng", "文峰村"), ("taiping", "太平村"), ("shengli", "胜利村"), ("qianjin", "前进村"),
    ("dongfeng", "东风村"), ("hongyan", "红岩村"), ("helin", "鹤林村"), ("wayao", "瓦窑村"), ("shilong", "石龙村"),
    ("beiya", "碑垭村"), ("miaoya", "庙垭村"), ("yankou", "岩口村"), ("xindian", "新店村"), ("caofang", "槽房村"),
    ("maan", "马鞍村"), ("shitou", "狮头村"), ("pujia", "蒲家村"), ("wanjia", "万家村"), ("luojia", "罗家村"),
    ("tanjia", "谭家村"), ("xiangjia", "向家村"), ("qinjia", "秦家村"), ("ranjia", "冉家村"), ("qingshui", "清水村"),
    ("longtan", "龙滩村"), ("yuquan", "鱼泉村"), ("shaba", "沙坝村"), ("tianxing", "天星村"),
    ("fenghuang", "凤凰村"), ("jinshan", "金山村"), ("yinshan", "银山村"), ("yuhe", "玉河村"), ("lizi", "梨子村"),
    ("taoyuan", "桃园村"), ("chayuan", "茶园村"), ("zhulin", "竹林村"), ("hetao", "核桃村"), ("xinglong", "兴隆村"),
]

COMMUNITIES: list[tuple[str, str]] = [
    ("binjiang", "滨江社区"), ("chengbei", "城北社区"), ("chengnan", "城南社区"), ("huiyuan", "汇源社区"),
    ("changjiang", "长江社区"), ("jinxiu", "锦绣社区"), ("cuiping", "翠屏社区"), ("shuyuan", "书院社区"),
    ("jiqing", "积庆社区"), ("huanghua", "皇华社区"), ("shidi", "石堤社区"), ("dongpo", "东坡社区"),
]

SURNAMES = ("王李张刘陈杨黄周吴徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余杜叶程魏苏吕丁任"
            "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛段雷侯龙陶黎贺顾毛龚邵万严覃向冉")
GIVEN = ("建国 春梅 志强 秀英 德明 桂兰 永红 晓东 家富 玉华 明华 淑芬 国庆 红英 大军 小燕 光荣 海燕 勇 敏 "
         "文斌 丽 成林 素琴 学军 翠兰 世平 凤英 宗华 金秀 绍云 琼 德全 碧华 开明 红梅 长青 元芳 远志 兴华").split()

TERRAIN = "湾坡岩坪沟梁嘴垭槽包坎屋基坝"
RESERVOIR_WORDS = ("红旗 五一 向阳 跃进 龙门 双龙 白鹤 大河 团堡 马鞍 天生 石盘 黄泥塘 鸭子塘 长滩 高洞 老鹰 "
                   "桐子 杉木 青杠 大湾 小河 回龙 九龙 关门 七星 水口 新塘 三角 石牛 卧龙 钟鼓 凉风 蔡家 谭家 "
                   "陈家 廖家 王家 罗家 周家 冉家 杨家 秦家 黄家 刘家 何家 方家 石家 邓家").split()
FOREST_WORDS = ("方斗山 猫耳山 大岭 青龙山 白云山 尖山子 轿顶山 黄草坪 狮子岩 金竹坪 凤凰山 鹰嘴岩 望乡台 "
                "老林湾 松树垭 香炉山 太平山 马鞍山 天池坪 雷打岩").split()
